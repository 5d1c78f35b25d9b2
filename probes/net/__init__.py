"""Network clients and protocol codecs the probes share: the hot-path HTTP client,
RTMP's AMF0 and chunk stream, the FLV test stream, the WebRTC peer session and NTP.
They speak a protocol and map its errors to ``probes.base.Failure``; judging what they
bring back is a probe's (or a core's) job. Modules here import only the standard library,
third-party libraries, ``probes.base``, ``probes.faults``, ``probes.core`` and each other
(tests/test_layout.py checks it).
"""
