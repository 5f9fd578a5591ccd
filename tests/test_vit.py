"""The ViT encoder: sizes by name, pooling, position embeddings, errors, registry, FSDP rule."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ssl_jax import sharding as sharding_lib

from ssl_jax import models
from ssl_jax.models import vit


def test_variants_pooling_and_posemb():
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 16, 16, 3)), jnp.float32)
  for pool, posemb in (("cls", "sincos2d"), ("gap", "learn")):
    model = vit.ViT(variant="mu", patch_size=4, image_size=16, pool=pool, posemb=posemb)
    variables = model.init(jax.random.PRNGKey(0), x)
    assert model.apply(variables, x).shape == (2, 64)
    params = variables["params"]
    assert ("cls" in params) == (pool == "cls") and ("pos_embedding" in params) == (
        posemb == "learn"
    )
    assert params["block0"]["MultiHeadDotProductAttention_0"]["query"]["kernel"].shape == (
        64,
        2,
        32,
    )
  # published sizes: ViT-Ti width 192 depth 12 heads 3, ViT-S 384/12/6, ViT-B 768/12/12
  assert vit.VARIANTS["ti"] == (192, 12, 768, 3) and vit.VARIANTS["b"] == (768, 12, 3072, 12)
  shapes = jax.eval_shape(
      vit.ViT(variant="s", patch_size=16, image_size=224).init,
      jax.random.PRNGKey(0),
      jnp.zeros((1, 224, 224, 3)),
  )
  count = sum(np.prod(x.shape) for x in jax.tree.leaves(shapes))
  assert 21e6 < count < 23e6  # ViT-S/16 has about 22M parameters


def test_sincos_embeddings_are_fixed_and_distinct():
  table = vit.sincos_2d(4, 4, 16)
  assert table.shape == (16, 16)
  assert len({tuple(np.round(row, 5)) for row in table}) == 16
  with pytest.raises(ValueError, match="divisible by 4"):
    vit.sincos_2d(2, 2, 6)


def test_encode_on_a_subset_of_tokens():
  model = vit.ViT(variant="mu", patch_size=4, image_size=16, pool="gap")
  x = jnp.ones((2, 16, 16, 3))
  variables = model.init(jax.random.PRNGKey(0), x)
  tokens = model.apply(variables, x, method=vit.ViT.embed)
  assert tokens.shape == (2, 16, 64)
  out = model.apply(variables, tokens[:, :4], method=vit.ViT.encode)
  assert out.shape == (2, 4, 64)


def test_bad_settings_fail_clearly():
  x = jnp.ones((1, 16, 16, 3))
  with pytest.raises(ValueError, match="variant 'xl'"):
    vit.ViT(variant="xl", image_size=16, patch_size=4).init(jax.random.PRNGKey(0), x)
  with pytest.raises(ValueError, match="not a multiple of patch_size"):
    vit.ViT(variant="mu", image_size=18, patch_size=4).init(
        jax.random.PRNGKey(0), jnp.ones((1, 18, 18, 3))
    )
  with pytest.raises(ValueError, match="got 10x10 images"):
    vit.ViT(variant="mu", image_size=16, patch_size=4).init(
        jax.random.PRNGKey(0), jnp.ones((1, 10, 10, 3))
    )


@pytest.mark.parametrize("posemb", ["sincos2d", "learn"])
def test_other_image_sizes_get_their_own_position_table(posemb):
  """DINO's local crops are smaller than the global ones."""
  model = vit.ViT(variant="mu", patch_size=4, image_size=16, posemb=posemb)
  variables = model.init(jax.random.PRNGKey(0), jnp.ones((1, 16, 16, 3)))
  assert model.apply(variables, jnp.ones((3, 8, 8, 3))).shape == (3, 64)
  tokens = model.apply(variables, jnp.zeros((1, 8, 8, 3)), method=vit.ViT.embed)
  assert tokens.shape == (1, 4, 64) and np.all(np.isfinite(tokens))


def test_registry_builds_vit_and_fsdp_shards_its_kernels():
  config = ml_collections.ConfigDict(
      dict(name="vit", variant="ti", patch_size=4, posemb="sincos2d", pool="gap", dtype="float32")
  )
  encoder = models.build_encoder(config, image_size=32)
  assert isinstance(encoder, vit.ViT) and encoder.image_size == 32
  assert {"resnet", "vit"} <= set(models.available())
  with pytest.raises(ValueError, match="unknown config.model.name 'vitt'"):
    models.build_encoder(ml_collections.ConfigDict(dict(name="vitt", dtype="float32")))
  # another encoder's setting, changed from its default, has no effect here: a warning names it
  with pytest.warns(
      UserWarning,
      match=r"config.model.depth=10 has no effect: it is a setting of "
      r"\['resnet', 'ts_dilated_conv'\], not of the 'vit' encoder",
  ):
    models.build_encoder(
        ml_collections.ConfigDict({**config.to_dict(), "depth": 10}), image_size=32
    )
  mesh = jax.make_mesh(
      (4, 2), sharding_lib.BATCH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * 2
  )
  shapes = jax.eval_shape(encoder.init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
  mlp_kernel = shapes["params"]["block0"]["MlpBlock_0"]["Dense_0"]["kernel"]  # (192, 768)
  assert sharding_lib.param_sharding(mesh, mlp_kernel).spec == jax.sharding.PartitionSpec(
      None, "fsdp"
  )
