"""Live watching: capture children writing pcap to pipes, one engine, streamed findings.

capture.py starts and stops the capture processes (tcpdump keeps the capture privileges; this
process only reads pipes), tracker.py decides which findings are new or have escalated,
output.py writes events as JSON Lines or text, loop.py ties them together.
"""
