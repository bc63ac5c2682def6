import os

os.environ.setdefault("MUJOCO_GL", "egl")
# torch.compile costs tens of seconds per learner; the suite runs eagerly (subprocesses too),
# and tests/test_compile.py turns it back on where it checks compiled against eager updates.
os.environ["TORCHDYNAMO_DISABLE"] = "1"
