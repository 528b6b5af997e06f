"""The shared core of the engine and the twin (standard library only).

Block keys, the per-tier prefix index, eviction policies, the tier allocator, the GET/PUT
planner and its transfer graphs, and stats. Time is always passed in as ``now``; nothing
here reads a clock, a config file or a global.
"""
