"""Benchmark: how fast a hop scales out when a load step crosses its threshold.

On the emulated leaf-spine fabric (controller, agents and instances as in
the demo; the controller polls OpenFlow statistics every 0.5 s), a chain
from client1 to server1 has one monitor hop (min 1, max 3, out_above 1000
packets/s per instance).  Each step starts a UDP load of 3000 packets/s in
many short flows; the timeline of the step is:

- threshold crossed: the load starts (it is above the threshold from its first packet);
- decision: the controller's scale-out event;
- booted: the new instance's ``instance-running`` event;
- first packet: the new instance's ``count_in`` counter (read from its agent
  every 5 ms) is no longer zero.

Between steps the load stops and the hop is scaled back to 1.  Budget: under
1.5 s from crossing to first packet (the median of the steps).  There is no
baseline to run (ratio null): the figure is a sum of the poll interval,
the boot and the re-plan, each printed.

The last line printed is one JSON object.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from controller.agents import HttpAgentClient  # noqa: E402 - after the path set-up above
from controller.demo import Stage, poll, start_stage  # noqa: E402
from controller.loadgen import UdpLoad  # noqa: E402
from topologies import emulator  # noqa: E402
from topologies.loader import load_topology  # noqa: E402

STEPS = 5
LOAD_PPS = 3000
BUDGET_S = 1.5
POLL_S = 0.5
TOPO = Path(__file__).resolve().parent.parent / "topologies" / "leaf-spine.yaml"
CHAIN = """
chains:
  - name: step
    classifier: {src: 10.0.1.1/32, dst: 10.0.2.1/32}
    hops:
      - name: mon
        function: monitor
        scaling: {min: 1, max: 3, metric: pps, out_above: 1000, in_below: 300, cooldown: 1s}
"""


def events(stage: Stage) -> list[dict]:
    return stage.api.ok("GET", "/v1/chains/step/events")["events"]


def wait_event(stage: Stage, action: str, after: float, timeout: float = 10.0) -> dict:
    found = poll(lambda: next((e for e in events(stage) if e["action"] == action and e["time"] >= after), None),
                 timeout, every=0.01)
    if found is None:
        raise RuntimeError(f"no {action} event within {timeout:g} s: {events(stage)}")
    return found


def instances(stage: Stage) -> list[dict]:
    return stage.api.ok("GET", "/v1/chains/step?counters=0")["hops"][0]["instances"]


def one_step(stage: Stage) -> dict[str, float]:
    client, server_ip = stage.ns("client1"), stage.ip("server1")
    load = UdpLoad(client, server_ip, 5001, pps=LOAD_PPS)
    crossed = load.started
    try:
        decision = wait_event(stage, "scale-out", crossed)
        new_id = decision["instance"]
        booted = wait_event(stage, "instance-running", crossed)
        compute = next(i["compute"] for i in instances(stage) if i["id"] == new_id)
        agent = HttpAgentClient(stage.topology.compute_by_name[compute].agent)
        if not poll(lambda: int(agent.read_handler(new_id, "count_in", "count")) > 0, 10, every=0.005):
            raise RuntimeError(f"no packet reached {new_id}")
        first = time.time()
    finally:
        load.stop()
    # Back to one instance before the next step.
    if not poll(lambda: len(instances(stage)) == 1, 60, every=0.1):
        raise RuntimeError(f"the hop did not scale back in: {events(stage)}")
    return {"decision": decision["time"] - crossed, "booted": booted["time"] - crossed, "first": first - crossed}


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="cs-bench-scale-"))
    fabric_dir = work / "fabric"
    stage = start_stage(load_topology(TOPO), work,
                        lambda topo, ctl: emulator.up(topo, controller=ctl, run_dir=fabric_dir),
                        controller_args=("--poll-interval", str(POLL_S), "--drain-timeout", "5"))
    steps = []
    try:
        stage.apply(CHAIN)
        for n in range(STEPS):
            step = one_step(stage)
            steps.append(step)
            print(f"step {n + 1}: threshold crossed at 0; decision +{step['decision']:.3f} s, "
                  f"booted +{step['booted']:.3f} s, first packet on the new instance +{step['first']:.3f} s",
                  flush=True)
    finally:
        stage.close()
        if (fabric_dir / emulator.STATE_FILE).exists():
            emulator.down(fabric_dir)
    median = {k: statistics.median(s[k] for s in steps) for k in ("decision", "booted", "first")}
    print(f"median of {STEPS} load steps ({LOAD_PPS} pps against out_above 1000 pps, poll {POLL_S} s): "
          f"decision {median['decision']:.3f} s, booted {median['booted']:.3f} s, "
          f"first packet {median['first']:.3f} s; worst first packet {max(s['first'] for s in steps):.3f} s")
    print(json.dumps({"bench": "scale_reaction", "value": round(median["first"], 3), "unit": "s",
                      "budget": BUDGET_S, "ratio": None, "ok": median["first"] < BUDGET_S}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
