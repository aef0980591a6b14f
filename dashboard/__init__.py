"""The control API and live page of a running lab (served by `lab up`).

Its stage: after the controller (it reads the controller's REST API, never its modules) and
before the measurements, which may drive a running lab through it; it imports from lab/ and
topologies/ only.
"""
