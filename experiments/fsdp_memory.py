"""Per-device bytes of parameters + optimiser state under FSDP, on 8 simulated CPU devices.

  python experiments/fsdp_memory.py            # ResNet-50 (224 px) and ViT-B/16, LARS

For mesh.fsdp = 1, 2, 4, 8 (data = 8 / fsdp) it builds the training loop's components and reads
what one device holds from the state sharding the loop uses (`Components.state_sharding`, rule
`sharding.param_sharding`): the shard shape of every leaf, without allocating the arrays
(tests/test_scale_out.py checks this count against allocated shards). "large" are the leaves of at
least 2**16 elements, the ones the rule shards.
"""

import os
import sys

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402


from ssl_jax import config as config_lib  # noqa: E402
from ssl_jax import train  # noqa: E402

MODELS = {
    "resnet50": dict(name="resnet", depth=50, stem="imagenet"),
    "vit_b16": dict(name="vit", variant="b", patch_size=16, pool="gap"),
}


def device_bytes(model, fsdp):
  """(large, all) bytes of params + opt_state on device 0, and the parameter count."""
  c = config_lib.base_config()
  c.data.image_size, c.data.channels, c.data.num_classes = 224, 3, 1000
  c.global_batch_size = 256
  c.task_kwargs.projection_dims = (2048, 128)
  c.mesh.data, c.mesh.fsdp = 8 // fsdp, fsdp
  for key, value in MODELS[model].items():
    c.model[key] = value
  comps = train.build(c, input_shape=(224, 224, 3), steps_per_epoch=100, total_steps=1000)
  abstract = jax.eval_shape(comps.init_state, jax.random.PRNGKey(0))
  large = total = 0
  for part in ("params", "opt_state"):
    for leaf, sharding in zip(
        jax.tree.leaves(getattr(abstract, part)),
        jax.tree.leaves(getattr(comps.state_sharding, part)),
    ):
      nbytes = int(np.prod(sharding.shard_shape(leaf.shape))) * leaf.dtype.itemsize
      total += nbytes
      large += nbytes if leaf.size >= 2**16 else 0
  count = sum(x.size for x in jax.tree.leaves(abstract.params))
  return large, total, count


def main():
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument(
      "--models", default=",".join(MODELS), help=f"comma-separated: {', '.join(MODELS)}"
  )
  args = parser.parse_args()
  assert jax.device_count() == 8, "needs 8 simulated devices (XLA_FLAGS is set before JAX starts)"
  print("| model | params | mesh | large leaves / device | all / device | vs fsdp=1 |")
  print("|---|---|---|---|---|---|")
  for model in args.models.split(","):
    base = None
    for fsdp in (1, 2, 4, 8):
      large, total, count = device_bytes(model, fsdp)
      base = base or total
      print(
          f"| {model} | {count / 1e6:.1f} M | data={8 // fsdp} x fsdp={fsdp} "
          f"| {large / 2**20:.1f} MiB "
          f"| {total / 2**20:.1f} MiB | {total / base:.3f} |",
          flush=True,
      )


if __name__ == "__main__":
  main()
