"""Shipyard's domain core: cluster repositories and the services that write them."""
