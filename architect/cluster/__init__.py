"""Several routers serving one run, sharing through Redis what one router alone holds.

Off unless `[cluster] redis` is set; a single router without Redis works as before.
See docs/scaling.md for the keys and channels.
"""
