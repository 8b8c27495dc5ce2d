"""The RM API deployable (served by the sink process): HTTP routes, authentication, principals."""
