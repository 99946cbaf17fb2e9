//! Cluster DNS: CoreDNS's kubernetes plugin's records, served by every agent.
