"""The admin listener: metrics, the live monitor page and run-time controls, on a port of
its own that workers never reach (docs/security.md, "The admin listener")."""
