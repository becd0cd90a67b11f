"""The ``suanli.io/`` label keys, defined once for every layer that reads or writes them.

The same keys label a machine wherever it is seen: a Kubernetes Node (read by `api.discovery.nodes`), a Ray node
(``ray start --labels suanli.io/tier=hpc``, written by `scheduler.slicing` and matched by the scheduler's tier
selectors), and the Helm chart's templates. They live here, in the lowest layer (api -> scheduler ->
census_agent), so that each of those imports one definition instead of repeating the string.

Pure constants: must not import anything.
"""

# The census labels an operator may set on a node (the agent's `labels` section, in label form).
REGION_LABEL = "suanli.io/region"  # six-digit administrative code, e.g. 440106
ORGANISATION_LABEL = "suanli.io/organisation"
SITE_LABEL = "suanli.io/site"
TIER_LABEL = "suanli.io/tier"  # general | ai | hpc | edge; also what a raylet of a tier is labelled with

# What Kubernetes cannot tell about a CPU, declared on the Node (api.discovery.nodes).
CLOCK_LABEL = "suanli.io/cpu-base-clock-mhz"
PER_CYCLE_LABEL = "suanli.io/cpu-fp64-flops-per-cycle"  # overrides the rule chosen from the ISA flags
