"""Architectures as researchers download them: torchvision, timm and HuggingFace transformers
constructors with small configs and random weights (nothing downloaded), each with a sample batch.

Each builder returns ``(model, inputs)``: the model in eval mode, seeded, and a batch of 4 inputs
it takes as ``model(inputs)``. The table of issue 23 is the first six entries of :data:`ZOO`; the
rest are architectures that already converted, kept converting, and ones with parameters of their
own (torchvision's ConvNeXt, timm's ResMLP, Llama). :data:`REFUSED` holds the ones refused by
name: torchvision's Swin (passes its Linear layers' weights to ``F.linear`` itself) and
HuggingFace's ViT (reads ``projection.weight.dtype`` from outside the layer, and an analog layer
has no weight tensor). Every builder is
also a factory for the command line: ``analogsam inspect tests.zoo_architectures:gpt2``.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

SAMPLES = 4


def _images(channels: int = 3, size: int = 32) -> torch.Tensor:
    return torch.randn(SAMPLES, channels, size, size, generator=torch.Generator().manual_seed(1))


def _tokens(vocab: int = 100, length: int = 12) -> torch.Tensor:
    return torch.randint(0, vocab, (SAMPLES, length), generator=torch.Generator().manual_seed(1))


def _ready(model: nn.Module, inputs):
    return model.eval(), inputs


def _seeded(builder):
    """The builder, run from seed 0: each constructor's own random initialisation, the same every time."""

    @functools.wraps(builder)
    def build():
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return builder()

    return build


# --- torchvision -------------------------------------------------------------------------------


@_seeded
def torchvision_vit():
    from torchvision.models import VisionTransformer

    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64)
    model.heads = nn.Linear(32, 10)
    return _ready(model, _images())


@_seeded
def torchvision_resnet18():
    from torchvision.models import resnet18

    return _ready(resnet18(num_classes=10), _images())


@_seeded
def torchvision_squeezenet():
    from torchvision.models import squeezenet1_1

    return _ready(squeezenet1_1(num_classes=10), _images())


@_seeded
def torchvision_convnext():
    """torchvision's ConvNeXt: its CNBlock holds a layer-scale vector of its own."""
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    settings = [CNBlockConfig(16, 32, 1), CNBlockConfig(32, None, 1)]
    return _ready(ConvNeXt(settings, num_classes=10), _images())


@_seeded
def torchvision_swin():
    """torchvision's Swin: its attention passes qkv.weight to F.linear itself (refused by name)."""
    from torchvision.models.swin_transformer import SwinTransformer

    model = SwinTransformer(
        patch_size=[4, 4], embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=[4, 4], num_classes=10
    )
    return _ready(model, _images())


# --- timm --------------------------------------------------------------------------------------


@_seeded
def timm_convnext_atto():
    import timm

    model = timm.create_model(
        "convnext_atto", pretrained=False, num_classes=10, depths=(1, 1, 1, 1), dims=(16, 24, 32, 48)
    )
    return _ready(model, _images())


@_seeded
def timm_deit_tiny():
    import timm

    model = timm.create_model(
        "deit_tiny_patch16_224",
        pretrained=False,
        img_size=32,
        patch_size=8,
        depth=2,
        embed_dim=32,
        num_heads=2,
        num_classes=10,
    )
    return _ready(model, _images())


@_seeded
def timm_mobilevit():
    import timm

    return _ready(timm.create_model("mobilevit_xxs", pretrained=False, num_classes=10), _images(size=64))


@_seeded
def timm_resmlp():
    """timm's ResMLP (its MlpMixer with ResBlock and Affine): affine norms and layer scales, all element-wise."""
    from timm.models.mlp_mixer import Affine, MlpMixer, ResBlock

    model = MlpMixer(
        num_classes=10,
        img_size=32,
        patch_size=8,
        num_blocks=2,
        embed_dim=32,
        mlp_ratio=4,
        block_layer=ResBlock,
        norm_layer=Affine,
    )
    return _ready(model, _images())


# --- HuggingFace transformers ------------------------------------------------------------------


@_seeded
def gpt2():
    """GPT-2's projections are transformers' Conv1D: Linear layers with the weight transposed."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=100,
        n_positions=32,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
        attn_implementation="eager",
    )
    return _ready(GPT2LMHeadModel(config), _tokens())


@_seeded
def t5_encoder():
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)
    return _ready(T5EncoderModel(config), _tokens())


@_seeded
def bert():
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=5,
    )
    return _ready(BertForSequenceClassification(config), _tokens())


@_seeded
def distilbert():
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    config = DistilBertConfig(
        vocab_size=100, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=32, num_labels=5
    )
    return _ready(DistilBertForSequenceClassification(config), _tokens())


@_seeded
def hf_vit():
    """HuggingFace's ViT reads its patch projection's weight.dtype from outside the layer."""
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=10,
    )
    return _ready(ViTForImageClassification(config), _images())


@_seeded
def llama():
    """Llama: RMS norms (a weight multiplied in) and rotary embeddings (buffers)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=100,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=32,
    )
    return _ready(LlamaForCausalLM(config), _tokens())


# --- torch alone -------------------------------------------------------------------------------


@_seeded
def dilated_tcn():
    """A temporal convolutional network (WaveNet-style dilations 1, 2, 4; one grouped)."""
    model = nn.Sequential(
        nn.Conv1d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv1d(8, 8, 3, padding=2, dilation=2),
        nn.ReLU(),
        nn.Conv1d(8, 8, 3, padding=4, dilation=4, groups=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    )
    return _ready(model, torch.randn(SAMPLES, 3, 24, generator=torch.Generator().manual_seed(1)))


#: Every architecture that converts, by name; the first six are the table of issue 23.
ZOO = {
    "torchvision-vit": torchvision_vit,
    "timm-convnext-atto": timm_convnext_atto,
    "timm-deit-tiny": timm_deit_tiny,
    "hf-gpt2": gpt2,
    "hf-t5-encoder": t5_encoder,
    "dilated-tcn": dilated_tcn,
    "torchvision-resnet18": torchvision_resnet18,
    "torchvision-squeezenet": torchvision_squeezenet,
    "torchvision-convnext": torchvision_convnext,
    "timm-mobilevit": timm_mobilevit,
    "timm-resmlp": timm_resmlp,
    "hf-bert": bert,
    "hf-distilbert": distilbert,
    "hf-llama": llama,
}

#: Architectures refused by name, and the layer the refusal names.
REFUSED = {
    "torchvision-swin": (torchvision_swin, "features.1.0.attn.qkv (Linear)"),
    "hf-vit": (hf_vit, "vit.embeddings.patch_embeddings.projection (Conv2d)"),
}


#: The output that stands for the prediction where a model's output is not logits (a regression on it).
OUTPUTS = {"hf-t5-encoder": lambda out: out.last_hidden_state}


def prediction(name: str, output):
    """The prediction in ``output`` of zoo model ``name``: its logits, or :data:`OUTPUTS`' tensor."""
    from analogsam.scoring import model_output

    return OUTPUTS[name](output) if name in OUTPUTS else model_output(output)


def evaluate_on_pcm(name: str, model: nn.Module, x: torch.Tensor) -> tuple[str, list[dict]]:
    """``evaluate`` of zoo model ``name`` on ``pcm`` at 1 s and 1 d, one repeat, the fast engine, against the
    digital network's own prediction: agreement with its classes or next tokens (``accuracy``), or a
    regression on its output (``mse``). Returns the metric and the rows."""
    from analogsam import evaluate
    from analogsam.evaluation.settings import PassLayout

    with torch.no_grad():
        digital = prediction(name, model(x))
    if name in OUTPUTS:
        metric, targets, output_fn = "mse", digital, OUTPUTS[name]
    else:
        metric, targets, output_fn = "accuracy", digital.argmax(-1), None
    rows = evaluate(
        model,
        [(x, targets)],
        "pcm",
        times=[1.0, 86400.0],
        repeats=1,
        layout=PassLayout(backend="fast"),
        metric=metric,
        output_fn=output_fn,
        progress=False,
    )
    return metric, rows
