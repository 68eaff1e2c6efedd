"""mpp-admin: the operator's command line over the shared pool state."""
