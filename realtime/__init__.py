"""The shared realtime core: wire basics, base consumer, runs, streams, database
helpers, the model client, rate limits, rendering, lifecycle and metrics.

Apps (chat, rooms, voice) import from here; nothing here imports an app.
"""
