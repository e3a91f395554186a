"""The backend: channels to routers, the ClientIOHandler, the worker pool, agents."""
