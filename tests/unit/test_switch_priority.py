"""When a switch's main thread runs real-time (lab.switchpriority.wants_realtime)."""

from lab.switchpriority import DEMOTE_SHARE, PROMOTE_SHARE, wants_realtime


def test_a_light_switch_stays_realtime_and_a_busy_one_is_demoted():
    assert wants_realtime(True, 0.0)
    assert wants_realtime(True, DEMOTE_SHARE)
    assert not wants_realtime(True, DEMOTE_SHARE + 0.01)


def test_a_demoted_switch_returns_only_once_clearly_light():
    between = (PROMOTE_SHARE + DEMOTE_SHARE) / 2
    assert not wants_realtime(False, between)  # no flapping in the band between
    assert not wants_realtime(False, PROMOTE_SHARE)
    assert wants_realtime(False, PROMOTE_SHARE - 0.01)
    assert PROMOTE_SHARE < DEMOTE_SHARE
