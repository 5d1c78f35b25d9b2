"""Pure analysis cores of the probes: parsers, models, detectors and codecs of pictures,
fed data and returning findings, with no network I/O (STYLE.md 5). A probe at the top
of probes/ fetches and hands what it fetched to these. Decoding bytes already in memory
(PyAV) belongs here; opening a socket does not (that is probes/net/). Modules here import
only the standard library, third-party libraries, ``probes.base``, ``probes.faults`` and
each other (tests/test_layout.py checks it).
"""
