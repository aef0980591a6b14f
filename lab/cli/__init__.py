"""The `lab` command line: the last stage of the flow, and the only code that prints.

main (options, exit statuses, signals) -> one module per group of commands: topo (topology
files, doctor, cleanup), running (up, run, verify, controller), measure (bench db, compare,
report); output holds the console, the tables' number format and the progress display that
the measurements report to.
"""
