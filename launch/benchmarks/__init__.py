"""Benchmarks of the project's hot paths (`python launch/bench.py`).

harness   compile vs steady-state timing, memory, one case dict per measurement
flops     analytic matmul/convolution FLOPs from the jaxpr, next to XLA's cost analysis
peak      measured matmul peak of this machine and the vendor's peak of known accelerators
machine   CPU model and cores, accelerator name
report    JSON and the Markdown table docs/benchmarks.md shows
task_step a task's training step exactly as the generic driver runs it
runner    runs the selected suites and writes the report (what launch/bench.py calls)
suites/   eg3d, sat3d, frldgt
"""
