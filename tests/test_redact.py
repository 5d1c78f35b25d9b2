"""redact_url / redact_text: no userinfo, query value, RTMP stream key or literal secret survives."""

from __future__ import annotations

import pytest

from probes.core.redact import redact_text, redact_url, rtmp_stream_key


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rtmp://user:pw@ingest.example:1935/live/sk-123?token=x",
         "rtmp://***@ingest.example:1935/live/***?token=***"),
        ("rtmp://127.0.0.1:1935/live/CANARYKEY", "rtmp://127.0.0.1:1935/live/***"),
        ("rtmps://a.rtmp.youtube.com/live2/abcd-efgh-ijkl", "rtmps://a.rtmp.youtube.com/live2/***"),
        ("rtmp://host/app/inst/key/", "rtmp://host/app/inst/***/"),
        ("rtmp://host/app", "rtmp://host/app"),  # the application alone is no secret
        ("RTMP://host/app/key", "rtmp://host/app/***"),
        ("https://cdn.example/live/main.m3u8?token=abc&v=1&flag",
         "https://cdn.example/live/main.m3u8?token=***&v=***&***"),
        ("http://u@cdn.example/x.m3u8#frag", "http://***@cdn.example/x.m3u8"),
        ("http://127.0.0.1:8080/hls/main.m3u8", "http://127.0.0.1:8080/hls/main.m3u8"),
        ("http://[::1]:8080/a?b=c", "http://[::1]:8080/a?b=***"),
        ("http://host:notaport/x", "<unparseable URL>"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_url_on_text_with_urls_inside() -> None:
    text = "cannot publish to rtmp://h:1935/live/SECRETKEY (refused); see http://x/?t=TOK"
    out = redact_url(text)
    assert "SECRETKEY" not in out and "TOK" not in out
    assert out == "cannot publish to rtmp://h:1935/live/*** (refused); see http://x/?t=***"


def test_redact_text_masks_literal_secrets_and_never_raises() -> None:
    assert redact_text("key SECRETKEY was refused", ["SECRETKEY", ""]) == "key *** was refused"
    assert redact_text(12) == "12"
    assert redact_url("") == ""
    assert redact_url(None) == "<not a URL>"  # type: ignore[arg-type]


def test_rtmp_stream_key() -> None:
    assert rtmp_stream_key("rtmp://h/live/KEY?x=1") == "KEY"
    assert rtmp_stream_key("rtmp://h/live") is None
    assert rtmp_stream_key("http://h/live/KEY") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [  # what libraries print without a scheme: request lines, parameters, headers
        ('http://127.0.0.1:80 "POST /hook?token=T1&x=1 HTTP/1.1" 200 2',
         'http://127.0.0.1:80 "POST /hook?token=***&x=*** HTTP/1.1" 200 2'),
        ("sent token=T2, then X-Amz-Signature=T3&X-Amz-Date=20261130", "sent token=***, then X-Amz-Signature=***&X-Amz-Date=***"),
        ("stream_key=T4 api_key=T5 Key-Pair-Id=T6 sig=T7 password=T8", "stream_key=*** api_key=*** Key-Pair-Id=*** sig=*** password=***"),
        ("{'Authorization': 'Bearer T9', 'Accept': '*/*'}", "{'Authorization': 'Bearer ***', 'Accept': '*/*'}"),
        ("(b'authorization', b'Basic VDEwOlQxMQ==')", "(b'authorization', b'Basic ***')"),
        ("X-Api-Key: T12", "X-Api-Key: ***"),
        ("retrying with Bearer T13.abc-def", "retrying with Bearer ***"),
        # not credentials: kept readable
        ("keyframe=1 keyframe_interval=4.0 sigma=2", "keyframe=1 keyframe_interval=4.0 sigma=2"),
        ("check the WHIP bearer token and its expiry", "check the WHIP bearer token and its expiry"),
        ("edge-b 360p: HTTP 404 for segment 1842", "edge-b 360p: HTTP 404 for segment 1842"),
    ],
)
def test_redact_text_masks_credentials_outside_urls(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_redact_text_without_paths_keeps_scheme_and_host_only() -> None:
    msg = "'http://127.0.0.1:1935/live/KEY' is not an rtmp(s):// URL; nor ftp://u:pw@h:21/T?token=x"
    assert redact_text(msg, path=False) == "'http://127.0.0.1:1935' is not an rtmp(s):// URL; nor ftp://***@h:21"
