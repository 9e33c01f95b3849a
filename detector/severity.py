"""A finding's severities, least to most severe: the report's ``severity`` and ``--fail-on``.

Apart from detector.findings so that a command's options are declared without loading the
report's records, which a scan needs only once its packets are read.
"""

SEVERITY_ORDER: dict[str, int] = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
