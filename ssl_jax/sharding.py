"""The mesh and where arrays live on it, for pre-training (train.py), fine-tuning (finetune/) and
the data pipeline alike.

The mesh has two axes, BATCH_AXES = ('data', 'fsdp'): batches split over both; a large parameter
(and its optimiser state) splits its largest divisible axis over 'fsdp' (FSDP), the rest is
replicated. Host arrays become global `jax.Array`s in one of two ways:
  from_process_local  each process holds its own rows of the batch (the input pipeline's case);
  from_host_copies    every process holds the same whole arrays (the study's labelled sets).
"""

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

BATCH_AXES = ("data", "fsdp")


def make_mesh(config):
  """A (data, fsdp) mesh; data=-1 takes every device not used by fsdp."""
  devices = jax.devices()
  fsdp = config.mesh.fsdp
  data = len(devices) // fsdp if config.mesh.data == -1 else config.mesh.data
  if (
      data < 1
      or fsdp < 1
      or data * fsdp > len(devices)
      or (jax.process_count() > 1 and data * fsdp != len(devices))
  ):
    raise ValueError(
        f"config.mesh data={config.mesh.data} x fsdp={fsdp} does not fit the "
        f"{len(devices)} devices; use data=-1 to take them all"
    )
  auto = jax.sharding.AxisType.Auto
  return jax.make_mesh(
      (data, fsdp), BATCH_AXES, axis_types=(auto, auto), devices=devices[: data * fsdp]
  )


def check_batch_divides(global_batch_size, mesh):
  if global_batch_size < 2:
    raise ValueError(f"global_batch_size={global_batch_size}: needs at least 2 examples")
  if global_batch_size % mesh.size:
    raise ValueError(
        f"global_batch_size={global_batch_size} does not divide over {mesh.size} "
        f"devices; use a multiple of {mesh.size}"
    )


def param_sharding(mesh, x, min_size=2**16):
  """FSDP: shard a large parameter's largest divisible axis over 'fsdp'; replicate the rest."""
  fsdp = mesh.shape["fsdp"]
  if fsdp == 1 or x.size < min_size:
    return NamedSharding(mesh, P())
  for axis in np.argsort(x.shape)[::-1]:
    if x.shape[axis] % fsdp == 0:
      spec = [None] * x.ndim
      spec[axis] = "fsdp"
      return NamedSharding(mesh, P(*spec))
  return NamedSharding(mesh, P())


def from_process_local(local_batch, sharding):
  """This process's rows of a batch (numpy) -> global jax.Arrays sharded along the batch axis.

  An explicit copy, allowed under the loop's transfer guard: with several processes JAX builds
  the array through a path (`make_array_from_callback`) that its guard counts as implicit.
  """
  with jax.transfer_guard_host_to_device("allow"):
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)


def from_host_copies(tree, sharding):
  """Host numpy arrays, identical on every process, -> global jax.Arrays placed by `sharding`."""
  return jax.tree.map(
      lambda a: jax.make_array_from_callback(a.shape, sharding, lambda i: a[i]), tree
  )
