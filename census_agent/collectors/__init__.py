"""Collectors: the only code in Suanli that reads the machine.

Every collector reads from an injectable root (``/`` in production, ``/host`` in a container with the host's
/proc, /sys and /etc mounted, a fixture tree in tests), the way prometheus/client_python injects its procfs
path.  NVML is reached through the small `NvmlApi` interface so a fake can stand in for GPUs in tests.
"""
