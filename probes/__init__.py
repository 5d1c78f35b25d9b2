"""signalpath probes: one module per probe, one entry shape; see ``probes.registry``."""
