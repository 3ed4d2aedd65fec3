#!/usr/bin/env python3
"""Run real LocalStack as a host process on 127.0.0.1 (these machines have no Docker engine).

    python localstack/ctl.py start    # idempotent: reuses a healthy instance, else installs and starts one
    python localstack/ctl.py stop     # stops the instance this script started (by its pid file)
    python localstack/ctl.py status   # health of the instance, exit 0 when healthy, 3 when not running

LocalStack needs Python 3.13 and pins its own botocore/moto, so it lives in its own venv under
``localstack/.runtime/`` (ignored by git), together with kinesis-local (the Node build of kinesis-mock)
and the per-instance data.  The venv is rebuilt only when ``requirements.lock`` changes; the DynamoDB
provider plugin in ``plugin/`` is reinstalled only when its files change.

The port defaults to 4566; ``--port`` or ``LOCALSTACK_PORT`` selects another so that independent
instances can run side by side (each with its own data directory).

Only the standard library is used: this script runs before anything else is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import glob
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNTIME = HERE / ".runtime"
VENV = RUNTIME / "venv"
REQUIREMENTS = HERE / "requirements.lock"
PLUGIN_DIR = HERE / "plugin"
KINESIS_LOCAL_VERSION = "0.5.2"
KINESIS_LOCAL_DIR = RUNTIME / "kinesis-local" / KINESIS_LOCAL_VERSION

SERVICES = ("kinesis", "dynamodb", "cloudwatch", "firehose", "s3", "sts", "iam")
HEALTHY_STATES = {"running", "available"}
DEFAULT_PORT = 4566

#: The environment of every instance, besides its port and folders.  A running instance started with
#: other settings is restarted by ``start`` (they are part of :func:`installation_digest`).
INSTANCE_SETTINGS = {
    "SERVICES": ",".join(SERVICES),
    "EAGER_SERVICE_LOADING": "1",
    # Tests switch fault injection on and off with POST /_localstack/config.
    "ENABLE_CONFIG_UPDATES": "1",
    "PROVIDER_OVERRIDE_DYNAMODB": "moto",
    "OVERRIDE_IN_DOCKER": "0",
    # Stream create/delete/reshard transitions take this long (ms) in kinesis-mock.
    "KINESIS_LATENCY": "0",
    "DISABLE_EVENTS": "1",
    "DNS_ADDRESS": "0",
    "SKIP_SSL_CERT_DOWNLOAD": "1",
    "PERSISTENCE": "0",
    # PERSISTENCE=0 does not reach kinesis-mock: LocalStack reads KINESIS_PERSISTENCE separately and treats
    # it as on unless it is false (localstack.config: is_env_not_false), and then kinesis-mock rewrites
    # its whole state to disk every 5 s.  After ~40 MB written that grows to gigabytes and 100 % CPU
    # until it stops answering.  Tests never need Kinesis data to survive a restart.
    "KINESIS_PERSISTENCE": "0",
}


class CtlError(Exception):
    """A failure with a message meant for the person running the command."""


def log(message: str) -> None:
    print(f"[localstack] {message}", file=sys.stderr, flush=True)


# --- installation -------------------------------------------------------------------------------


def _digest(*paths: Path, extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for path in paths:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def find_python313() -> str:
    """LocalStack 2026.x uses Python 3.13 features even though its metadata says >=3.10."""
    candidates: list[str] = []
    if os.environ.get("LOCALSTACK_PYTHON"):
        candidates.append(os.environ["LOCALSTACK_PYTHON"])
    for name in ("python3.13",):
        found = shutil.which(name)
        if found:
            candidates.append(found)
    for root in (os.path.expanduser("~/.pyenv"), os.environ.get("PYENV_ROOT", ""), "/root/.pyenv"):
        if root:
            candidates.extend(sorted(glob.glob(os.path.join(root, "versions", "3.13*", "bin", "python")), reverse=True))
    candidates.extend(["/usr/local/bin/python3.13", "/usr/bin/python3.13"])
    for candidate in candidates:
        if not os.path.exists(candidate):
            continue
        try:
            out = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
                capture_output=True, text=True, timeout=30, check=True,
            ).stdout.split()
        except (OSError, subprocess.SubprocessError):
            continue
        if (int(out[0]), int(out[1])) >= (3, 13):
            return candidate
    raise CtlError(
        "LocalStack needs a Python 3.13 interpreter and none was found "
        "(looked for LOCALSTACK_PYTHON, python3.13 on PATH and pyenv versions 3.13*). "
        "Install Python 3.13 or point LOCALSTACK_PYTHON at one."
    )


def _run_logged(cmd: list[str], logfile: Path, what: str, cwd: Path | None = None) -> None:
    with logfile.open("a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, check=False)
    if result.returncode != 0:
        raise CtlError(f"{what} failed (exit {result.returncode}); last lines of {logfile}:\n{tail(logfile)}")


def _venv_digest() -> str:
    return _digest(REQUIREMENTS, extra="venv-v1")


def _plugin_digest() -> str:
    return _digest(*sorted(p for p in PLUGIN_DIR.iterdir() if p.is_file()), extra="plugin-v1")


def _settings_digest() -> str:
    return hashlib.sha256(json.dumps(INSTANCE_SETTINGS, sort_keys=True).encode()).hexdigest()


def installation_digest() -> str:
    """What a running instance was started from: the pinned requirements, the plugin's files, its settings."""
    return f"{_venv_digest()}:{_plugin_digest()}:{_settings_digest()}"


def ensure_venv() -> Path:
    python = VENV / "bin" / "python"
    want = _venv_digest()
    stamp = VENV / ".requirements.sha256"
    if stamp.exists() and stamp.read_text().strip() == want and python.exists():
        return python
    if VENV.exists():
        log("LocalStack requirements changed: rebuilding its venv")
        shutil.rmtree(VENV)
    interpreter = find_python313()
    RUNTIME.mkdir(parents=True, exist_ok=True)
    install_log = RUNTIME / "install.log"
    install_log.write_text("")
    log(f"creating LocalStack venv with {interpreter} (about a minute, once)")
    started = time.monotonic()
    _run_logged([interpreter, "-m", "venv", str(VENV)], install_log, "creating the venv")
    _run_logged(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", str(REQUIREMENTS)],
        install_log, "installing LocalStack",
    )
    (VENV / ".plugin.sha256").unlink(missing_ok=True)
    stamp.write_text(want + "\n")
    log(f"LocalStack venv ready in {time.monotonic() - started:.0f}s")
    return python


def ensure_plugin(python: Path) -> None:
    want = _plugin_digest()
    stamp = VENV / ".plugin.sha256"
    if stamp.exists() and stamp.read_text().strip() == want:
        return
    log("installing the DynamoDB provider plugin into the LocalStack venv")
    build_dir = RUNTIME / "plugin-build"
    shutil.rmtree(build_dir, ignore_errors=True)
    shutil.copytree(PLUGIN_DIR, build_dir)
    _run_logged(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", "--no-deps",
         "--no-build-isolation", "--force-reinstall", str(build_dir)],
        RUNTIME / "install.log", "installing the DynamoDB provider plugin",
    )
    shutil.rmtree(build_dir, ignore_errors=True)
    stamp.write_text(want + "\n")


def ensure_kinesis_local() -> None:
    """Pre-install kinesis-local so that the first CreateStream does not stall on an npm install."""
    marker = KINESIS_LOCAL_DIR / "node_modules" / "kinesis-local" / "main.js"
    if marker.exists():
        return
    npm = shutil.which("npm")
    if not npm:
        raise CtlError("npm was not found: LocalStack's Kinesis (kinesis-local) is a Node package. Install Node.js.")
    log(f"installing kinesis-local@{KINESIS_LOCAL_VERSION} with npm")
    KINESIS_LOCAL_DIR.mkdir(parents=True, exist_ok=True)
    _run_logged(
        [npm, "install", "--no-audit", "--no-fund", "--prefix", str(KINESIS_LOCAL_DIR),
         f"kinesis-local@{KINESIS_LOCAL_VERSION}"],
        RUNTIME / "install.log", "installing kinesis-local",
    )
    if not marker.exists():
        raise CtlError(f"npm finished but {marker} is missing")


def install() -> Path:
    python = ensure_venv()
    ensure_plugin(python)
    ensure_kinesis_local()
    return python


# --- instances ----------------------------------------------------------------------------------


class Instance:
    def __init__(self, port: int) -> None:
        self.port = port
        self.dir = RUNTIME / "instances" / str(port)
        self.fs_root = self.dir / "fs"
        self.pid_file = self.dir / "localstack.pid"
        #: installation_digest() of what the running process was started from.
        self.started_from = self.dir / "started-from"
        self.log_file = self.dir / "localstack.log"
        self.url = f"http://127.0.0.1:{port}"

    def health(self) -> dict[str, object] | None:
        try:
            with urllib.request.urlopen(f"{self.url}/_localstack/health", timeout=3) as resp:
                return json.loads(resp.read()) if resp.status == 200 else None
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def is_healthy(self) -> bool:
        health = self.health()
        if not health:
            return False
        services = health.get("services")
        if not isinstance(services, dict):
            return False
        return all(services.get(name) in HEALTHY_STATES for name in SERVICES)

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def environment(self) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items()
            if not k.startswith(("AWS_", "PYTHON", "VIRTUAL_ENV", "LOCALSTACK_", "PIP_REQUIRE"))
        }
        env.update(INSTANCE_SETTINGS)
        env.update(
            GATEWAY_LISTEN=f"127.0.0.1:{self.port}",
            # Everything LocalStack writes stays under this instance's folder.
            FILESYSTEM_ROOT=str(self.fs_root),
            LOCALSTACK_VOLUME_DIR=str(self.fs_root / "var" / "lib" / "localstack"),
        )
        return env

    def _link_kinesis_local(self) -> None:
        libs = self.fs_root / "var" / "lib" / "localstack" / "lib"
        libs.mkdir(parents=True, exist_ok=True)
        link = libs / "kinesis-local"
        if link.is_symlink() or link.exists():
            if link.is_symlink() and link.resolve() == KINESIS_LOCAL_DIR.parent.resolve():
                return
            if link.is_symlink() or link.is_file():
                link.unlink()
            else:
                shutil.rmtree(link)
        link.symlink_to(KINESIS_LOCAL_DIR.parent, target_is_directory=True)

    def start(self, python: Path, timeout: float) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._link_kinesis_local()
        with self.log_file.open("w") as out:
            proc = subprocess.Popen(
                [str(python), "-m", "localstack.runtime.main"],
                cwd=self.dir, env=self.environment(), stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        self.started_from.write_text(installation_digest() + "\n")
        log(f"started LocalStack (pid {proc.pid}) on {self.url}; log: {self.log_file}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise CtlError(
                    f"LocalStack exited with code {proc.returncode} during start-up; "
                    f"last lines of {self.log_file}:\n{tail(self.log_file)}"
                )
            if self.is_healthy():
                return
            time.sleep(0.5)
        self.stop()
        raise CtlError(
            f"LocalStack was not healthy within {timeout:.0f}s; last lines of {self.log_file}:\n{tail(self.log_file)}"
        )

    def wait_healthy(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_healthy():
                return True
            if self.pid() is None:
                return False
            time.sleep(0.5)
        return False

    def stop(self, timeout: float = 20.0) -> bool:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.pid() is not None:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.2)
        if self.pid() is not None:
            log(f"LocalStack (pid {pid}) ignored SIGTERM for {timeout:.0f}s: killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True


def tail(path: Path, lines: int = 40) -> str:
    try:
        content = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(content[-lines:])


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Serialise concurrent `start` calls (two test runs at once must not build the venv twice)."""
    RUNTIME.mkdir(parents=True, exist_ok=True)
    with (RUNTIME / "ctl.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- commands -----------------------------------------------------------------------------------


def _started_from_current(instance: Instance) -> bool:
    try:
        return instance.started_from.read_text().strip() == installation_digest()
    except OSError:
        return False


def cmd_start(instance: Instance, timeout: float) -> int:
    with locked():
        if instance.is_healthy() and instance.pid() is not None and not _started_from_current(instance):
            log("the running LocalStack was started from an older installation (requirements, plugin or "
                "settings changed): restarting it")
            instance.stop()
        if instance.is_healthy():
            log(f"LocalStack is already running and healthy on {instance.url}")
            return 0
        if instance.pid() is not None:
            log("a LocalStack started earlier is still coming up; waiting for it")
            if instance.wait_healthy(timeout):
                log(f"LocalStack is healthy on {instance.url}")
                return 0
            log("it did not become healthy: restarting it")
            instance.stop()
        elif instance.health() is not None:
            raise CtlError(
                f"something answers on {instance.url} but it is not a healthy LocalStack with the services "
                f"{', '.join(SERVICES)}; stop it or choose another port with LOCALSTACK_PORT"
            )
        python = install()
        started = time.monotonic()
        instance.start(python, timeout)
        log(f"LocalStack is healthy on {instance.url} ({time.monotonic() - started:.0f}s)")
        return 0


def cmd_stop(instance: Instance) -> int:
    if instance.stop():
        log(f"LocalStack on {instance.url} stopped")
    else:
        log(f"no LocalStack started by this script is running on port {instance.port}")
    return 0


def cmd_status(instance: Instance) -> int:
    health = instance.health()
    pid = instance.pid()
    if health is None:
        print(f"not running on {instance.url}" + (f" (pid {pid} is starting)" if pid else ""))
        return 3
    services = health.get("services", {})
    print(f"{'healthy' if instance.is_healthy() else 'unhealthy'}: {instance.url} (pid {pid or 'unknown'})")
    for name in SERVICES:
        print(f"  {name:<11} {services.get(name, 'missing') if isinstance(services, dict) else '?'}")
    print(f"  log: {instance.log_file}")
    return 0 if instance.is_healthy() else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["start", "stop", "status", "install"])
    parser.add_argument("--port", type=int, default=int(os.environ.get("LOCALSTACK_PORT", DEFAULT_PORT)))
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for health on start")
    args = parser.parse_args(argv)
    instance = Instance(args.port)
    try:
        if args.command == "start":
            return cmd_start(instance, args.timeout)
        if args.command == "stop":
            return cmd_stop(instance)
        if args.command == "install":
            with locked():
                install()
            return 0
        return cmd_status(instance)
    except CtlError as exc:
        log(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
