"""Spotting, leave-one-subject-out on CAS(ME)^3 Part A (30 fps).

  python launch/spot_sweep.py --config configs/spotting_casme3a.py:synthetic --workdir W
  python launch/spot_sweep.py --config configs/spotting_casme3a.py --workdir W   # as it ships

Every hyperparameter and variant is configs/spotting_casme2_lv.py's; only the dataset differs
(':synthetic': the generated corpus of python launch/make_synthetic.py --long --out
out/long_corpus).
"""
from launch.trainer import from_file


def get_config(arg: str = ""):
  c = from_file("spotting_casme2_lv.py", arg)
  if arg == "":
    c.name = "spotting_casme3a"
    c.data.dataset = "casme3_a"
    c.data.root = "data/casme3_a"
  elif arg == "synthetic":
    c.name = "spotting_casme3a_synthetic"
    c.data.dataset = "casme3_a"
    c.data.root = "out/long_corpus/casme3_a"
  c.lock()
  return c
