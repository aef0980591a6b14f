"""The topology model: delay derivation, validation messages, the default file."""

from __future__ import annotations

import copy
import ipaddress
import math

import pytest
import yaml

from controllers.services import service_address
from tests.helpers import DEFAULT_TOPOLOGY, run_lab
from topologies.model import (LinkClass, TopologyError, derived_delay_ms, great_circle_km,
                              host_ip, host_mac)
from topologies.loader import load, parse

BASE = yaml.safe_load(DEFAULT_TOPOLOGY.read_text())


def test_great_circle_one_degree_on_equator():
    # 2 * pi * 6371 km / 360
    assert great_circle_km(0, 0, 0, 1) == pytest.approx(111.195, abs=0.001)


def test_great_circle_boston_to_virginia_by_hand():
    # Haversine by hand for (42.28, -71.24) -> (39.04, -77.49)
    p1, p2 = math.radians(42.28), math.radians(39.04)
    h = (math.sin((p2 - p1) / 2) ** 2
         + math.cos(p1) * math.cos(p2) * math.sin(math.radians(-77.49 + 71.24) / 2) ** 2)
    assert great_circle_km(42.28, -71.24, 39.04, -77.49) == pytest.approx(
        2 * 6371 * math.asin(math.sqrt(h)))
    assert 630 < great_circle_km(42.28, -71.24, 39.04, -77.49) < 650


def test_derived_delay_is_distance_times_inflation_times_fiber_plus_equipment():
    cls = LinkClass("x", inflation=2.1, equipment_ms=0.5)
    # 1000 km x 2.1 x 4.9 us/km = 10.29 ms, + 0.5 ms
    assert derived_delay_ms(1000, cls) == pytest.approx(10.79)


def test_default_link_delays_derived_and_cited():
    topo = load(DEFAULT_TOPOLOGY)
    op = topo.link_between("op1a", "rga")
    distance = great_circle_km(42.28, -71.24, 39.04, -77.49)
    assert op.delay_ms == pytest.approx(distance * 2.1 * 0.0049 + 0.5)
    assert op.delay_source.startswith("derived:")
    inter_region = topo.link_between("rga", "rgb")
    assert inter_region.delay_ms == 31.2
    assert "62.4 ms" in inter_region.delay_source


def test_default_file_reproduces_the_case_study():
    topo = load(DEFAULT_TOPOLOGY)
    kinds = {}
    for site in topo.sites.values():
        kinds[site.kind] = kinds.get(site.kind, 0) + 1
    assert kinds["datacenter"] == 2
    assert kinds["outpost"] == 4
    assert kinds["localzone"] == 4
    assert kinds["region"] == 2
    assert kinds["clinic"] >= 4
    for dc in ("dc1", "dc2"):
        outposts = [s for s in topo.sites.values() if s.kind == "outpost" and s.datacenter == dc]
        zones = [s for s in topo.sites.values() if s.kind == "localzone" and s.datacenter == dc]
        assert len(outposts) == 2 and len(zones) == 2
        assert len({o.region for o in outposts}) == 1
    homes = {s.datacenter: s.region for s in topo.sites.values() if s.kind == "outpost"}
    assert homes["dc1"] != homes["dc2"]
    assert {h.role for h in topo.hosts.values()} == {"db-primary", "db-standby", "monolith",
                                                     "service", "client"}
    assert topo.hosts_with_role("db-primary")[0].site == "dc1"
    assert topo.hosts_with_role("db-standby")[0].site == "dc2"
    # A DC-to-DC link and an inter-Region link
    topo.link_between("dc1", "dc2")
    topo.link_between("rga", "rgb")


def test_expected_rtt_is_twice_the_path_delay():
    topo = load(DEFAULT_TOPOLOGY)
    paths = {(p["src"], p["dst"]): p for p in topo.lowest_latency_paths()}
    p = paths[("dc1", "op1a")]
    assert p["path"] == ["dc1", "op1a"]
    assert p["expected_rtt_ms"] == pytest.approx(0.4)
    assert len(paths) == len(topo.sites) * (len(topo.sites) - 1) // 2


def test_ports_are_hosts_first_then_links_in_file_order():
    topo = load(DEFAULT_TOPOLOGY)
    ports = topo.switch_ports("dc1")
    assert ports[1] == "pg1" and ports[2] == "mono1" and ports[3] == "op1a"
    assert topo.port_to("dc1", "dc2") == [p for p, n in ports.items() if n == "dc2"][0]


def test_addresses_are_per_site():
    topo = load(DEFAULT_TOPOLOGY)
    assert topo.hosts["pg1"].ip == "10.1.0.1"
    assert topo.hosts["mono1"].ip == "10.1.0.2"
    assert topo.hosts["pg2"].ip == "10.2.0.1"
    assert len({h.mac for h in topo.hosts.values()}) == len(topo.hosts)


def test_the_first_254_sites_keep_their_addresses():
    for s in range(1, 255):
        for n in (1, 99):
            assert host_ip(s, n) == f"10.{s}.0.{n}"
            assert host_mac(s, n) == f"02:4c:00:00:{s:02x}:{n:02x}"


def test_a_thousand_sites_get_unique_addresses_clear_of_services():
    data = {"name": "big", "link_classes": BASE["link_classes"],
            "sites": [{"name": f"s{i}", "kind": "clinic", "lat": 0, "lon": i / 10}
                      for i in range(1000)],
            "links": [],
            "hosts": [{"name": f"h{i}x{n}", "site": f"s{i}", "role": "db-standby"}
                      for i in range(1000) for n in (1, 2)]}
    hosts = list(parse(data).hosts.values())
    own = [ipaddress.IPv4Address(h.ip) for h in hosts]
    second = [ipaddress.IPv4Address(service_address(h)) for h in hosts]
    assert len(set(own) | set(second)) == 2 * len(hosts)
    assert all(a in ipaddress.ip_network("10.0.0.0/8") and a.packed[1] != 0 for a in own + second)
    assert (hosts[-1].ip, hosts[-1].mac) == ("10.238.6.2", "02:4c:00:03:e8:02")  # site 1000
    assert len({h.mac for h in hosts}) == len(hosts)
    assert all(int(h.mac.split(":")[0], 16) & 3 == 2 for h in hosts)  # unicast, local


# -- validation: one test per kind of error, each naming the field ------------------------

def mutated(change) -> dict:
    data = copy.deepcopy(BASE)
    change(data)
    return data


def error_of(data) -> str:
    # Beside the default topology, so that its schedules' trace files are found.
    file = str(DEFAULT_TOPOLOGY.parent / "t.yaml")
    with pytest.raises(TopologyError) as info:
        parse(data, file)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{file}: ")
    return message


def test_unknown_key_is_named():
    msg = error_of(mutated(lambda d: d["links"][3].update(dealy_ms=5)))
    assert "links[3].dealy_ms: unknown key" in msg


def test_unknown_top_level_key():
    assert "(top)" not in error_of(mutated(lambda d: d.update(extra=1)))
    assert "extra: unknown key" in error_of(mutated(lambda d: d.update(extra=1)))


def test_wrong_type_is_named():
    msg = error_of(mutated(lambda d: d["sites"][0].update(lat="north")))
    assert "sites[0].lat: must be a number, got a string" in msg


def test_boolean_is_not_a_number():
    msg = error_of(mutated(lambda d: d["links"][0].update(loss_pct=True)))
    assert "links[0].loss_pct" in msg


def test_dangling_link_end():
    msg = error_of(mutated(lambda d: d["links"][0].update(ends=["dc1", "nowhere"])))
    assert "links[0].ends[1]: unknown site 'nowhere'" in msg


def test_dangling_host_site():
    msg = error_of(mutated(lambda d: d["hosts"][2].update(site="dc9")))
    assert "hosts[2].site: unknown site 'dc9'" in msg


def test_relation_to_wrong_kind():
    msg = error_of(mutated(lambda d: d["sites"][4].update(region="dc2")))
    assert "sites[4].region: 'dc2' is a datacenter, not a region" in msg


def test_missing_relation():
    msg = error_of(mutated(lambda d: d["sites"][4].pop("datacenter")))
    assert "sites[4].datacenter: is required" in msg


def test_duplicate_site_name():
    msg = error_of(mutated(lambda d: d["sites"][1].update(name="dc1")))
    assert "sites[1].name: duplicate site name 'dc1'" in msg


def test_duplicate_host_name():
    msg = error_of(mutated(lambda d: d["hosts"][1].update(name="pg1")))
    assert "hosts[1].name: duplicate host name 'pg1'" in msg


def test_duplicate_link():
    msg = error_of(mutated(lambda d: d["links"].append({"ends": ["op1a", "dc1"], "class": "lan"})))
    assert f"links[{len(BASE['links'])}].ends: duplicate link" in msg


def test_negative_delay():
    msg = error_of(mutated(lambda d: d["links"][0].update(delay_ms=-1)))
    assert "links[0].delay_ms: must be between 0 and 10000" in msg


def test_absurd_delay_over_ten_seconds():
    msg = error_of(mutated(lambda d: d["links"][0].update(delay_ms=20000)))
    assert "links[0].delay_ms: must be between 0 and 10000" in msg


def test_derived_delay_over_ten_seconds():
    def change(d):
        d["link_classes"]["metro"]["equipment_ms"] = 9999.0
        d["link_classes"]["metro"]["inflation"] = 10.0
    msg = error_of(mutated(change))
    assert "delay_ms: derived delay" in msg


def test_loss_outside_0_100():
    msg = error_of(mutated(lambda d: d["links"][5].update(loss_pct=150)))
    assert "links[5].loss_pct: must be between 0 and 100" in msg
    msg = error_of(mutated(lambda d: d["links"][5].update(loss_pct=-0.5)))
    assert "links[5].loss_pct" in msg


def test_cited_delay_needs_its_source():
    msg = error_of(mutated(lambda d: d["links"][0].pop("source")))
    assert "links[0].source: is required" in msg


@pytest.mark.parametrize("name", ["DC1", "dc-1", "dc1; rm", "toolongname", "1dc", "dc 1",
                                  "hlx", ""])
def test_unsafe_names_are_rejected(name):
    msg = error_of(mutated(lambda d: d["sites"][0].update(name=name)))
    assert "sites[0].name:" in msg


def test_unsafe_host_name():
    msg = error_of(mutated(lambda d: d["hosts"][0].update(name="pg1$(reboot)")))
    assert "hosts[0].name:" in msg


def test_unknown_kind_and_role():
    assert "sites[2].kind:" in error_of(mutated(lambda d: d["sites"][2].update(kind="cloud")))
    assert "hosts[0].role:" in error_of(mutated(lambda d: d["hosts"][0].update(role="dba")))


def test_unknown_link_class():
    msg = error_of(mutated(lambda d: d["links"][0].update({"class": "fiber"})))
    assert "links[0].class: unknown link class 'fiber'" in msg


def test_cli_check_reports_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(mutated(lambda d: d["links"][2].update(loss_pct=101))))
    result = run_lab("topo", "check", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"{bad}: links[2].loss_pct: must be between 0 and 100, "
                                      f"got 101")
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_cli_reports_invalid_yaml(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("sites: [\n")
    result = run_lab("topo", "check", str(bad))
    assert result.returncode == 2
    assert result.stderr.startswith(f"{bad}: line ") and "not valid YAML" in result.stderr


def test_cli_reports_missing_file(tmp_path):
    result = run_lab("topo", "check", str(tmp_path / "none.yaml"))
    assert result.returncode == 2 and "cannot read" in result.stderr


def test_cli_show_json_has_the_documented_shape():
    import json
    result = run_lab("topo", "show", str(DEFAULT_TOPOLOGY), "--json")
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert set(data) >= {"sites", "links", "hosts", "paths"}
    assert {"name": "dc1", "kind": "datacenter"}.items() <= data["sites"][0].items()
    assert all("source" in link and "delay_ms" in link for link in data["links"])
    assert all(p["expected_rtt_ms"] > 0 for p in data["paths"])


def test_cli_show_table_names_each_delay_source():
    result = run_lab("topo", "show", str(DEFAULT_TOPOLOGY))
    assert result.returncode == 0
    assert "62.4 ms RTT" in result.stdout and "derived:" in result.stdout
