"""dataProcessingOptions produce what the Java agent's converters produce.

Expected outputs marked "Java test" are copied from the Java agent's DataConverterTest; the others
follow from reading its converters (research agent.md §2.4, §10 item 8).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from typing import Any

import pytest

from agent.converters import (
    AddEc2Metadata,
    AddMetadata,
    ConverterChain,
    build_converter_chain,
    compile_java_regex,
    java_double,
    java_split,
    java_trim,
    write_compact,
    write_pretty,
)
from agent.errors import AgentConfigurationError


def _error(index: int, key: str, problem: str) -> AgentConfigurationError:
    return AgentConfigurationError(f"dataProcessingOptions[{index}].{key}: {problem}")


def chain(*options: dict[str, Any]) -> ConverterChain:
    built = build_converter_chain(list(options), _error)
    assert built is not None
    return built


def convert(options: dict[str, Any], data: str) -> str | None:
    result = chain(options).convert(data.encode())
    return None if result is None else result.decode()


# --- SINGLELINE -------------------------------------------------------------------------------------


def test_singleline_escape_new_line_java_test() -> None:
    data = ('{\n   "a": {\n           "b": 1,\n           "c": null,\n           "d": true\n    },\n'
            '   "e": "f",\n   "g": 2\n     }\n')
    expected = '{\\\\n"a": {\\\\n"b": 1,\\\\n"c": null,\\\\n"d": true\\\\n},\\\\n"e": "f",\\\\n"g": 2\\\\n}\n'
    assert convert({"optionName": "SINGLELINE", "parseOptions": ["ESCAPE_NEW_LINE"]}, data) == expected


def test_singleline_trims_and_joins_without_separator() -> None:
    assert convert({"optionName": "SINGLELINE"}, "  a \n\tb\n c\n") == "abc\n"


def test_singleline_no_trim_keeps_whitespace() -> None:
    assert convert({"optionName": "SINGLELINE", "parseOptions": ["NO_TRIM"]}, "  a \n b\n") == "  a  b\n"


def test_singleline_of_blank_record_is_a_newline() -> None:
    assert convert({"optionName": "SINGLELINE"}, "\n") == "\n"


# --- CSVTOJSON --------------------------------------------------------------------------------------

CSV = {"optionName": "CSVTOJSON", "customFieldNames": ["column1", "column2", "column3", "column4"]}


def test_csv_java_test_values_keep_their_spaces_and_newlines() -> None:
    assert convert(CSV, "value1, value2,valu\ne3,    value4\n") == (
        '{"column1":"value1","column2":" value2","column3":"valu\\ne3","column4":"    value4"}\n'
    )


def test_csv_java_test_fewer_values_than_columns_are_null() -> None:
    assert convert(CSV, "value1, value2,value3\n") == (
        '{"column1":"value1","column2":" value2","column3":"value3","column4":null}\n'
    )


def test_csv_java_test_extra_values_are_ignored() -> None:
    assert convert(CSV, "value1,value2,value3,value4,value5\n") == (
        '{"column1":"value1","column2":"value2","column3":"value3","column4":"value4"}\n'
    )


def test_csv_java_test_tab_delimiter() -> None:
    assert convert({**CSV, "delimiter": "\\t"}, "value1\t value2\tvalue3\t    value4\n") == (
        '{"column1":"value1","column2":" value2","column3":"value3","column4":"    value4"}\n'
    )


def test_csv_trailing_empty_fields_are_dropped_like_java_split() -> None:
    # "a,,b,," splits to ["a", "", "b"] in Java: the empty middle field stays, the trailing ones go.
    assert convert(CSV, "a,,b,,\n") == '{"column1":"a","column2":"","column3":"b","column4":null}\n'


def test_csv_delimiter_is_a_regular_expression() -> None:
    assert convert({**CSV, "delimiter": "\\s*\\|\\s*"}, "a | b|c  |d\n") == (
        '{"column1":"a","column2":"b","column3":"c","column4":"d"}\n'
    )
    # "." is a regex: every character is a delimiter and all pieces are empty, so all fields are null.
    assert convert({**CSV, "delimiter": "."}, "a.b\n") == (
        '{"column1":null,"column2":null,"column3":null,"column4":null}\n'
    )


def test_csv_escapes_control_characters_like_jackson() -> None:
    assert convert({"optionName": "CSVTOJSON", "customFieldNames": ["a"]}, 'x"\\\x01\x7f\n') == (
        '{"a":"x\\"\\\\\\u0001\x7f"}\n'
    )


def test_java_split_semantics() -> None:
    comma = re.compile(",")
    assert java_split(comma, "") == [""]
    assert java_split(comma, ",") == []
    assert java_split(comma, ",a") == ["", "a"]
    assert java_split(re.compile(""), "ab") == ["a", "b"]
    assert java_split(re.compile("(,)"), "a,b") == ["a", "b"]  # no capture groups in the result


def test_java_trim_strips_control_characters_but_not_unicode_spaces() -> None:
    assert java_trim("\x00\t a \x1f") == "a"
    assert java_trim("\u00a0a\u2003") == "\u00a0a\u2003"


# --- LOGTOJSON --------------------------------------------------------------------------------------

COMBINED_LINE = ('123.45.67.89 - - [27/Oct/2000:09:27:09 -0400] "GET /java/javaResources.html HTTP/1.0" 200 10450 '
                 '"-" "Mozilla/4.6 [en] (X11; U; OpenBSD 2.8 i386; Nav)"')
COMMON_EXPECTED = ('{"host":"123.45.67.89","ident":null,"authuser":null,"datetime":"27/Oct/2000:09:27:09 -0400",'
                   '"request":"GET /java/javaResources.html HTTP/1.0","response":"200","bytes":"10450"}\n')


def test_combined_apache_log_java_test_dash_fields_are_null() -> None:
    expected = ('{"host":"123.45.67.89","ident":null,"authuser":null,"datetime":"27/Oct/2000:09:27:09 -0400",'
                '"request":"GET /java/javaResources.html HTTP/1.0","response":"200","bytes":"10450","referer":null,'
                '"agent":"Mozilla/4.6 [en] (X11; U; OpenBSD 2.8 i386; Nav)"}\n')
    options = {"optionName": "LOGTOJSON", "logFormat": "COMBINEDAPACHELOG"}
    assert convert(options, COMBINED_LINE + ' "ANY_RANDOM_DATA"') == expected
    assert convert(options, COMBINED_LINE + "\n") == expected


def test_common_apache_log_java_test_with_and_without_extra_fields() -> None:
    options = {"optionName": "LOGTOJSON", "logFormat": "COMMONAPACHELOG"}
    assert convert(options, COMBINED_LINE) == COMMON_EXPECTED
    assert convert(options, COMBINED_LINE.split(' "-"', maxsplit=1)[0]) == COMMON_EXPECTED
    hostname = 'lj1036.inktomisearch.com - - [27/Oct/2000:09:27:09 -0400] "GET /java/javaResources.html HTTP/1.0" ' \
               '200 10450'
    assert convert(options, hostname) == COMMON_EXPECTED.replace("123.45.67.89", "lj1036.inktomisearch.com")


def test_common_apache_log_dash_bytes_is_null() -> None:
    line = '10.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /a.gif HTTP/1.0" 304 -\n'
    assert convert({"optionName": "LOGTOJSON", "logFormat": "COMMONAPACHELOG"}, line) == (
        '{"host":"10.0.0.1","ident":null,"authuser":"frank","datetime":"10/Oct/2000:13:55:36 -0700",'
        '"request":"GET /a.gif HTTP/1.0","response":"304","bytes":null}\n'
    )


def test_non_matching_lines_are_dropped_java_test() -> None:
    options = {"optionName": "LOGTOJSON", "logFormat": "COMMONAPACHELOG"}
    truncated = '123.45.67.89 - - [27/Oct/2000:09:27:09 -0400] "GET /java/javaResources.html HTTP/1.0" 200'
    assert convert(options, truncated) is None
    assert convert(options, "not an access log line\n") is None
    assert convert(options, "\n") is None


def test_crlf_line_does_not_match_because_java_dot_stops_at_carriage_return() -> None:
    options = {"optionName": "LOGTOJSON", "logFormat": "COMBINEDAPACHELOG"}
    assert convert(options, COMBINED_LINE + "\r\n") is None


def test_apache_error_log_java_tests() -> None:
    options = {"optionName": "LOGTOJSON", "logFormat": "APACHEERRORLOG"}
    typical = ("[Fri Sep 09 10:42:29.902022 2011] [core:error] [pid 35708:tid 4328636416] [client 72.15.99.187] "
               "File does not exist: /usr/local/apache2/htdocs/favicon.ico")
    assert convert(options, typical) == (
        '{"timestamp":"Fri Sep 09 10:42:29.902022 2011","module":"core","severity":"error","processid":"35708",'
        '"threadid":"4328636416","client":"72.15.99.187","message":"File does not exist: '
        '/usr/local/apache2/htdocs/favicon.ico"}\n'
    )
    without_tid = ("[Fri Sep 09 10:42:29 2011] [core:error] [pid 35708] [client 72.15.99.187] "
                   "File does not exist: /usr/local/apache2/htdocs/favicon.ico")
    assert convert(options, without_tid) == (
        '{"timestamp":"Fri Sep 09 10:42:29 2011","module":"core","severity":"error","processid":"35708",'
        '"threadid":null,"client":"72.15.99.187","message":"File does not exist: '
        '/usr/local/apache2/htdocs/favicon.ico"}\n'
    )
    without_module = ("[Fri Sep 09 10:42:29.902022 2011] [error] [pid 35708:tid 4328636416] "
                      "[client 72.15.99.187:12345] File does not exist: /usr/local/apache2/htdocs/favicon.ico")
    assert convert(options, without_module) == (
        '{"timestamp":"Fri Sep 09 10:42:29.902022 2011","module":null,"severity":"error","processid":"35708",'
        '"threadid":"4328636416","client":"72.15.99.187:12345","message":"File does not exist: '
        '/usr/local/apache2/htdocs/favicon.ico"}\n'
    )


def test_custom_field_names_rename_default_fields_java_test() -> None:
    options = {"optionName": "LOGTOJSON", "logFormat": "COMMONAPACHELOG",
               "customFieldNames": [f"column{i}" for i in range(1, 8)]}
    line = '123.45.67.89 - - [27/Oct/2000:09:27:09 -0400] "GET /java/javaResources.html HTTP/1.0" 200 10450'
    assert convert(options, line) == (
        '{"column1":"123.45.67.89","column2":null,"column3":null,"column4":"27/Oct/2000:09:27:09 -0400",'
        '"column5":"GET /java/javaResources.html HTTP/1.0","column6":"200","column7":"10450"}\n'
    )


def test_match_pattern_with_custom_fields_java_test() -> None:
    options = {"optionName": "LOGTOJSON", "logFormat": "COMMONAPACHELOG",
               "matchPattern": '^([\\d.]+) (\\S+) (\\S+) \\[([\\w:/]+\\s[+\\-]\\d{4})\\] "(.+?)" (\\d{3})',
               "customFieldNames": [f"column{i}" for i in range(1, 7)]}
    line = '123.45.67.89 - - [27/Oct/2000:09:27:09 -0400] "GET /java/javaResources.html HTTP/1.0" 200'
    assert convert(options, line) == (
        '{"column1":"123.45.67.89","column2":null,"column3":null,"column4":"27/Oct/2000:09:27:09 -0400",'
        '"column5":"GET /java/javaResources.html HTTP/1.0","column6":"200"}\n'
    )


def test_syslog_java_tests_keep_dashes_and_null_missing_pid() -> None:
    options = {"optionName": "LOGTOJSON", "logFormat": "SYSLOG"}
    with_pid = "Mar 12 12:00:08 server2 rcd[308]: Loaded 12 packages in 'ximian-red-carpet|351' (0.01878 seconds) "
    assert convert(options, with_pid) == (
        '{"timestamp":"Mar 12 12:00:08","hostname":"server2","program":"rcd","processid":"308",'
        '"message":"Loaded 12 packages in \'ximian-red-carpet|351\' (0.01878 seconds) "}\n'
    )
    without_pid = "Mar 12 12:01:02 server4 snort: Ports to decode telnet on: 21 23 25 119"
    assert convert(options, without_pid) == (
        '{"timestamp":"Mar 12 12:01:02","hostname":"server4","program":"snort","processid":null,'
        '"message":"Ports to decode telnet on: 21 23 25 119"}\n'
    )
    assert (convert(options, "Mar 12 12:01:02 server4 snort: -\n") or "").endswith('"message":"-"}\n')
    assert convert(options, "garbage\n") is None


def test_rfc3339_syslog_and_the_rfc3164_alias() -> None:
    line = "2024-02-29T23:59:59.123+01:00 web-1 nginx[77]: upstream timed out\n"
    assert convert({"optionName": "LOGTOJSON", "logFormat": "RFC3339SYSLOG"}, line) == (
        '{"timestamp":"2024-02-29T23:59:59.123+01:00","hostname":"web-1","program":"nginx","processid":"77",'
        '"message":"upstream timed out"}\n'
    )
    assert convert({"optionName": "LOGTOJSON", "logFormat": "RFC3164SYSLOG"},
                   "Mar  1 00:00:01 h p: m\n") == convert({"optionName": "LOGTOJSON", "logFormat": "SYSLOG"},
                                                            "Mar  1 00:00:01 h p: m\n")


def test_pretty_print_follows_jacksons_default_pretty_printer() -> None:
    options = {"optionName": "LOGTOJSON", "logFormat": "SYSLOG", "jsonFormat": "PRETTYPRINT"}
    assert convert(options, "Mar 12 12:01:02 server4 snort: hi\n") == (
        '{\n  "timestamp" : "Mar 12 12:01:02",\n  "hostname" : "server4",\n  "program" : "snort",\n'
        '  "processid" : null,\n  "message" : "hi"\n}\n'
    )
    assert write_pretty({"a": [1, {"b": []}], "c": {}}) == (
        '{\n  "a" : [ 1, {\n      "b" : [ ]\n    } ],\n  "c" : { }\n}'
    )


# --- ADDMETADATA, ADDBRACKETS, ADDEC2METADATA --------------------------------------------------------


def test_add_metadata_java_test() -> None:
    options = {"optionName": "ADDMETADATA", "metadata": {"foo": {"bar": "bas"}, "key": "value"}}
    assert convert(options, "This is the data") == (
        '{"metadata":{"foo":{"bar":"bas"},"key":"value"},"data":"This is the data"}\n'
    )


def test_add_metadata_timestamp_is_utc_milliseconds() -> None:
    converter = AddMetadata({"k": 1.5}, True, write_compact,
                            clock=lambda: dt.datetime(2024, 5, 1, 12, 30, 1, 987654, tzinfo=dt.UTC))
    assert converter.convert("x\n") == '{"ts":"2024-05-01T12:30:01.987Z","metadata":{"k":1.5},"data":"x"}\n'


def test_add_metadata_timestamp_accepts_the_string_true_like_java() -> None:
    converter = chain({"optionName": "ADDMETADATA", "timestamp": "true", "metadata": None}).converters[0]
    assert isinstance(converter, AddMetadata) and converter.timestamp


def test_add_brackets() -> None:
    assert convert({"optionName": "ADDBRACKETS"}, "hello there!! :)") == "{hello there!! :)}"


def test_ec2_metadata_merges_into_json_records() -> None:
    metadata = {"privateIp": "10.0.0.7", "instanceId": "i-0abc", "region": "us-east-1"}
    converter = AddEc2Metadata(3600.0, write_compact, fetcher=lambda: dict(metadata))
    asyncio.run(converter.refresh())
    assert converter.convert('{"instanceId":"old","a":1}\n') == (
        '{"instanceId":"i-0abc","a":1,"privateIp":"10.0.0.7","region":"us-east-1"}\n'
    )


def test_ec2_metadata_off_ec2_passes_records_through() -> None:
    converter = AddEc2Metadata(3600.0, write_compact, fetcher=lambda: None)
    asyncio.run(converter.refresh())
    assert converter.convert('{"a":1}\n') == '{"a":1}\n'


def test_a_failing_converter_makes_the_chain_raise_so_the_raw_record_is_sent() -> None:
    ec2 = AddEc2Metadata(3600.0, write_compact, fetcher=lambda: {"instanceId": "i-1"})
    asyncio.run(ec2.refresh())
    from agent.errors import ConversionError

    with pytest.raises(ConversionError):
        ConverterChain([ec2]).convert(b"not json\n")


def test_chain_applies_converters_in_order_and_stops_at_a_drop() -> None:
    logs = {"optionName": "LOGTOJSON", "logFormat": "SYSLOG"}
    meta = {"optionName": "ADDMETADATA", "metadata": "m"}
    both = chain(logs, meta)
    assert both.convert(b"Mar 12 12:01:02 h p: x\n") == (
        b'{"metadata":"m","data":"{\\"timestamp\\":\\"Mar 12 12:01:02\\",\\"hostname\\":\\"h\\",\\"program\\":\\"p\\",'
        b'\\"processid\\":null,\\"message\\":\\"x\\"}"}\n'
    )
    assert both.convert(b"no match\n") is None


def test_invalid_utf8_becomes_replacement_characters() -> None:
    assert chain({"optionName": "CSVTOJSON", "customFieldNames": ["a"]}).convert(b"\xff\n") == (
        '{"a":"\ufffd"}\n'.encode()
    )


# --- JSON details and option validation ----------------------------------------------------------------


@pytest.mark.parametrize(("value", "text"), [
    (1.0, "1.0"), (0.001, "0.001"), (1234567.0, "1234567.0"), (1e7, "1.0E7"), (1.5e-5, "1.5E-5"),
    (12345678.9, "1.23456789E7"), (-2.5e20, "-2.5E20"), (0.0, "0.0"), (-0.0, "-0.0"),
])
def test_doubles_are_written_like_java(value: float, text: str) -> None:
    assert java_double(value) == text


def test_java_named_groups_are_accepted() -> None:
    assert compile_java_regex("(?<word>\\w+)").fullmatch("abc") is not None


@pytest.mark.parametrize(("option", "message"), [
    ({"optionName": "NOPE"}, "'NOPE' is not one of"),
    ({}, "optionName: is required"),
    ({"optionName": "USINGPLUGGIN", "className": "x"}, "not supported"),
    ({"optionName": "CSVTOJSON"}, "customFieldNames: is required"),
    ({"optionName": "CSVTOJSON", "customFieldNames": ["a"], "delimiter": "("}, "not a valid regular expression"),
    ({"optionName": "LOGTOJSON"}, "logFormat: is required"),
    ({"optionName": "LOGTOJSON", "logFormat": "NGINX"}, "'NGINX' is not one of"),
    ({"optionName": "LOGTOJSON", "logFormat": "SYSLOG", "matchPattern": "(a)"}, "customFieldNames: is required"),
    ({"optionName": "LOGTOJSON", "logFormat": "SYSLOG", "matchPattern": "(a)(b)", "customFieldNames": ["x"]},
     "has 2 capturing groups"),
    ({"optionName": "LOGTOJSON", "logFormat": "SYSLOG", "customFieldNames": ["x"]}, "SYSLOG has 5"),
    ({"optionName": "SINGLELINE", "parseOptions": ["TRIM"]}, "'TRIM' is not one of"),
    ({"optionName": "ADDMETADATA", "jsonFormat": "YAML"}, "jsonFormat: 'YAML' is not one of"),
    ({"optionName": "ADDMETADATA", "metdata": {}}, "metdata: unknown key for ADDMETADATA"),
    ({"optionName": "ADDEC2METADATA", "metadataTTL": "soon"}, "metadataTTL: expected a positive number"),
])
def test_invalid_options_name_the_key(option: dict[str, Any], message: str) -> None:
    with pytest.raises(AgentConfigurationError, match=re.escape(message)):
        build_converter_chain([option], _error)


def test_no_options_means_no_chain() -> None:
    assert build_converter_chain([], _error) is None
