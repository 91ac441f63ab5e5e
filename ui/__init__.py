"""hoptrace web UI: the built front end, served by the collector."""
