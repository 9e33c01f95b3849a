"""``mirrorwatch canary``: send a short, marked test stream of one format to a sensor."""

from __future__ import annotations

import sys

import click

from detector.canary import FORMATS

EXIT_OK, EXIT_USAGE = 0, 2


@click.command()
@click.option(
    "--format", "fmt", type=click.Choice(FORMATS), required=True,
    help="The kind of stream to imitate.",
)  # fmt: skip
@click.option(
    "--to", "to", default=None, metavar="ADDRESS",
    help="Where to send it: an address whose packets pass the sensor's span port.",
)  # fmt: skip
@click.option(
    "--count", type=click.IntRange(3, 50), default=20, show_default=True,
    help="Packets in the stream (the sensor labels a canary only when it kept them all).",
)  # fmt: skip
@click.option("--from", "src", default=None, metavar="ADDRESS", help="Source address.")
@click.option(
    "--write", "write", type=click.Path(dir_okay=False), default=None,
    help="Write the stream to this pcap instead of (or, with --to, as well as) sending it.",
)  # fmt: skip
def canary(fmt: str, to: str | None, count: int, src: str | None, write: str | None) -> None:
    """Send a canary: a short test stream of FORMAT, marked as a test, so that you can prove end
    to end that the sensor sees and reports this kind of stream.

    The sensor reports it as it would any stream of the format, and adds "canary: true" and a
    reason when every packet carries a valid marker.  The marker is signed with
    $MIRRORWATCH_CANARY_KEY (set the same on the sensor) or a public default key.  Sending needs
    root or CAP_NET_RAW.

    \b
    Examples:
      mirrorwatch canary --format tzsp --to 192.0.2.20
      mirrorwatch canary --format netflow-v9 --write canary.pcap && mirrorwatch scan canary.pcap
    Exit status: 0 sent (or written), 2 usage error or the packets could not be sent.
    """
    from detector import canary as lib

    if to is None and write is None:
        raise click.UsageError("give --to ADDRESS to send, or --write FILE.pcap")
    key = lib.canary_key()
    pkts = lib.packets(fmt, to or "198.51.100.20", count, key, src)
    if write is not None:
        from scapy.utils import wrpcap

        wrpcap(write, lib.frames(pkts))
        click.echo(f"mirrorwatch: {len(pkts)} {fmt} canary packets written to {write}", err=True)
    if to is not None:
        try:
            lib.send(pkts)
        except (OSError, PermissionError) as exc:
            click.echo(f"mirrorwatch: cannot send to {to}: {exc} (needs root)", err=True)
            sys.exit(EXIT_USAGE)
        click.echo(f"mirrorwatch: {len(pkts)} {fmt} canary packets sent to {to}", err=True)
    sys.exit(EXIT_OK)


COMMAND = canary
