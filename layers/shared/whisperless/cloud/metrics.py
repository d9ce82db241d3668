"""CloudWatch metrics of a finished job (Powertools Metrics, EMF)."""

from __future__ import annotations

from typing import Any


def record_job_metrics(metrics: Any, document: dict) -> None:
    from aws_lambda_powertools.metrics import MetricUnit

    if document["status"] == "failed":
        metrics.add_metric(name="JobsFailed", unit=MetricUnit.Count, value=1)
        return
    metrics.add_metric(name="JobsCompleted", unit=MetricUnit.Count, value=1)
    duration = document.get("duration") or 0.0
    metrics.add_metric(name="AudioSeconds", unit=MetricUnit.Seconds, value=duration)
    timings = document.get("timings") or {}
    if duration and timings.get("total"):
        metrics.add_metric(name="RealTimeFactor", unit=MetricUnit.Count, value=duration / timings["total"])
    for stage, seconds in timings.items():
        metrics.add_metric(name=f"Stage_{stage}", unit=MetricUnit.Seconds, value=seconds)
