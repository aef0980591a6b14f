"""The SDN controller: pure routing logic, a thin os-ken app, a REST API and a launcher.

flows (intended entries, ovs-ofctl text) <- planner (decision) <- routing (paths),
services (virtual IPs, endpoint choice), strategies (named pairs of both); monitor
(probes, delays, silent failures) and core (state and reactions) stay free of os-ken;
app, rest and launcher connect them to switches, HTTP and processes; flowsim walks
packets through intended flows for tests.
"""
