"""``mirrorwatch schema``: the JSON Schema of the report."""

from __future__ import annotations

import json

import click

from detector.findings import Report


@click.command()
def schema() -> None:
    """Print the JSON Schema of the JSON report (docs/schema.json is this output)."""
    click.echo(json.dumps(Report.model_json_schema(by_alias=True), indent=2))


COMMAND = schema
