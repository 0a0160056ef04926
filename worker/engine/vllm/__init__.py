"""The vLLM engine: replicas in their own processes on one GPU, fed over a Unix socket.

Nothing here imports vLLM at module level except ``replica`` (the replica program itself), so a
CPU install can import the package.
"""
