"""The toolkit is a guest in other people's programs: imported and used with logging unconfigured it
writes nothing at all, on stdout or stderr; once the program configures ``logging``, its handlers receive
the toolkit's records, with their key=value context.  Run as a real separate program against LocalStack."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

APP = textwrap.dedent('''
    import json
    import logging
    import sys

    stream, mode, records_file = sys.argv[1], sys.argv[2], sys.argv[3]
    collected = []

    class Collect(logging.Handler):
        def emit(self, record):
            collected.append({"logger": record.name, "level": record.levelname, "message": record.getMessage(),
                              "event": getattr(record, "kinesis_toolkit_event", None)})

    if mode == "debug":
        logging.basicConfig(level=logging.DEBUG, format="%(name)s %(levelname)s %(message)s")
        logging.getLogger().addHandler(Collect())

    import kpl
    import kcl
    import agent
    import agent.daemon

    with kpl.Producer(record_max_buffered_time_ms=50) as producer:
        futures = [producer.put_record(stream, f"record {i}".encode(), partition_key=f"key-{i}") for i in range(20)]
        producer.flush_all(timeout=60)
    if not all(future.result().success for future in futures):
        sys.exit(3)
    with open(records_file, "w") as out:
        json.dump(collected, out)
''')


def run_app(tmp_path: Path, stream: str, mode: str) -> tuple[subprocess.CompletedProcess[str], list[dict[str, object]]]:
    app = tmp_path / "app.py"
    app.write_text(APP)
    records_file = tmp_path / f"records-{mode}.json"
    # The environment points the SDK at LocalStack (tests/conftest.py), as a user's would.
    result = subprocess.run([sys.executable, str(app), stream, mode, str(records_file)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, json.loads(records_file.read_text())


def test_unconfigured_logging_means_no_output_at_all(tmp_path: Path, make_stream: Callable[..., str]) -> None:
    stream = make_stream(shards=2)
    result, records = run_app(tmp_path, stream, "quiet")
    assert result.stdout == ""
    assert result.stderr == ""
    assert records == []


def test_an_app_that_configures_logging_receives_the_toolkit_records(
    tmp_path: Path, make_stream: Callable[..., str],
) -> None:
    stream = make_stream(shards=2)
    result, records = run_app(tmp_path, stream, "debug")
    assert result.stdout == "", "the library never writes to stdout, even at DEBUG"
    toolkit = [record for record in records if str(record["logger"]).startswith("kpl.")]
    assert toolkit, f"no records from the kpl loggers among {sorted({str(r['logger']) for r in records})}"
    assert {record["level"] for record in toolkit} >= {"DEBUG"}
    # The key=value context travels in the message (for plain formatters) and as the event dict.
    with_context = [record for record in toolkit if isinstance(record["event"], dict) and len(record["event"]) > 1]
    assert with_context, toolkit
    event = with_context[0]["event"]
    assert isinstance(event, dict)
    key = next(k for k in event if k != "event")
    assert str(with_context[0]["message"]).startswith(str(event["event"]))
    assert f" {key}=" in str(with_context[0]["message"])
    # basicConfig's handler printed them on stderr, as the app asked.
    assert any(line.startswith("kpl.") for line in result.stderr.splitlines()), result.stderr[-2000:]
