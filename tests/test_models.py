"""Reference architectures build from their specs, run, and rebuild identically."""

import pytest
import torch

from analogsam.models import build_model, make_spec, model_names

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize(
    "name,channels,size",
    [("mlp", 1, 28), ("lenet5", 1, 28), ("lenet5", 1, 8), ("resnet20", 3, 32), ("resnet32", 3, 32), ("vgg8", 3, 32)],
)
def test_models_build_and_run(name, channels, size):
    model = build_model(make_spec(name, in_channels=channels, num_classes=7, input_size=size))
    assert model(torch.randn(2, channels, size, size)).shape == (2, 7)


def test_parameter_counts_match_the_papers():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(build_model(make_spec("lenet5", in_channels=1, num_classes=10, input_size=28))) == 61706
    # He et al. 2016 report 0.27M and 0.46M parameters for the CIFAR ResNet-20 / -32
    assert round(count(build_model(make_spec("resnet20", in_channels=3, num_classes=10, input_size=32))), -4) == 270000
    assert round(count(build_model(make_spec("resnet32", in_channels=3, num_classes=10, input_size=32))), -4) == 460000


def test_spec_round_trip_through_a_checkpoint_like_dict():
    spec = make_spec("mlp", in_channels=1, num_classes=10, input_size=8, hidden=[32])
    torch.manual_seed(0)
    a = build_model(spec)
    b = build_model(dict(spec))
    b.load_state_dict(a.state_dict())
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(a(x), b(x))


def test_unknown_model_suggests():
    with pytest.raises(ValueError, match="Did you mean 'lenet5'"):
        build_model({"name": "lenet", "in_channels": 1, "num_classes": 10, "input_size": 28})
    assert "resnet20" in model_names()


# -- the networks of issue 12: depthwise-separable CNNs, a transformer, recurrent nets --------------------

NEW_MODELS = ("dscnn", "mobilenet-tiny", "vit-tiny", "lstm")


def _count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", NEW_MODELS)
@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32), (1, 8)])
def test_new_image_models_build_and_run(name, channels, size):
    model = build_model(make_spec(name, in_channels=channels, num_classes=7, input_size=size))
    assert model(torch.randn(2, channels, size, size)).shape == (2, 7)


def test_new_models_parameter_counts_are_the_documented_ones():
    import analogsam.models.mobile as mobile
    import analogsam.models.recurrent as recurrent
    import analogsam.models.transformer as transformer

    counts = {
        name: _count(build_model(make_spec(name, in_channels=1, num_classes=10, input_size=28))) for name in NEW_MODELS
    }
    assert counts == {"dscnn": 27914, "mobilenet-tiny": 38474, "vit-tiny": 72074, "lstm": 82186}
    docs = {
        "dscnn": mobile.__doc__,
        "mobilenet-tiny": mobile.__doc__,
        "vit-tiny": transformer.__doc__,
        "lstm": recurrent.__doc__,
    }
    for name, count in counts.items():
        assert f"{count:,d} parameters" in " ".join(docs[name].split()), name


def test_the_new_models_use_the_plain_torch_layers_the_mappings_rewrite():
    from torch import nn

    def kinds(name, size=28):
        model = build_model(make_spec(name, in_channels=1, num_classes=10, input_size=size))
        return model, {type(m) for m in model.modules()}

    dscnn, found = kinds("dscnn")
    depthwise = [m for m in dscnn.modules() if isinstance(m, nn.Conv1d) and m.groups > 1]
    assert len(depthwise) == 4 and all(m.groups == m.in_channels == 64 for m in depthwise)
    mobilenet, found = kinds("mobilenet-tiny")
    depthwise = [m for m in mobilenet.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(depthwise) == 7 and all(m.groups == m.in_channels for m in depthwise) and nn.BatchNorm2d in found
    vit, found = kinds("vit-tiny")
    assert {nn.TransformerEncoderLayer, nn.MultiheadAttention, nn.Embedding, nn.LayerNorm} <= found
    layer = vit.encoder.layers[0]
    assert layer.self_attn.batch_first and layer.norm_first and len(vit.encoder.layers) == 2
    assert layer.self_attn.num_heads == 4 and layer.self_attn.embed_dim == 64
    _, found = kinds("lstm")
    assert nn.LSTM in found
    # the only parameters outside layers are none: every tensor lives in a layer the conversion knows of
    for name in NEW_MODELS:
        model, _ = kinds(name)
        assert not list(model.named_parameters(recurse=False)), name


def test_rows_are_time_steps_for_the_sequence_models():
    # dscnn and lstm read an image's H rows as time steps of C*W features, and take (B, T, F) as it is
    torch.manual_seed(0)
    for name in ("dscnn", "lstm"):
        model = build_model(make_spec(name, in_channels=2, num_classes=5, input_size=8)).eval()
        images = torch.randn(3, 2, 8, 8)
        rows = images.permute(0, 2, 1, 3).reshape(3, 8, 16)
        assert torch.equal(model(images), model(rows))
        one_d = build_model(make_spec(name, in_channels=1, num_classes=5, input_size=8, features=6)).eval()
        assert one_d(torch.randn(3, 20, 6)).shape == (3, 5)  # any length of a 1-D input
    with pytest.raises(ValueError, match="built for 16 features"):
        model(torch.randn(3, 8, 15))


def test_vit_patch_size_must_divide_the_image():
    from analogsam.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="patch_size 5 does not divide"):
        build_model(make_spec("vit-tiny", in_channels=1, num_classes=10, input_size=28, patch_size=5))
    model = build_model(make_spec("vit-tiny", in_channels=1, num_classes=10, input_size=28, patch_size=7, depth=3))
    assert model.position_embedding.num_embeddings == 16 + 1 and len(model.encoder.layers) == 3


# The transformer and the LSTM learn in a couple of digits epochs with AdamW, not with SGD's 0.05.
@pytest.mark.parametrize(
    "name,optimizer,lr",
    [("dscnn", "sgd", 0.05), ("mobilenet-tiny", "sgd", 0.05), ("vit-tiny", "adamw", 2e-3), ("lstm", "adamw", 2e-3)],
)
@pytest.mark.slow  # trains every new model on digits
def test_new_models_train_on_digits(name, optimizer, lr, digits):
    from analogsam.training import train

    run = train(
        name, digits, optimizer=optimizer, epochs=2, batch_size=32, lr=lr, weight_decay=0.0, seed=0, progress=False
    )
    losses = [m["train_loss"] for m in run.metrics]
    assert losses[-1] < 0.7 * losses[0], losses
    assert run.metrics[-1]["test_accuracy"] > 0.35  # chance is 0.1
    assert run.model_spec["name"] == name and run.model_spec["input_size"] == 8


def test_spec_of_a_new_model_rebuilds_it_through_a_checkpoint(tmp_path, digits):
    from analogsam.runs import load_run
    from analogsam.training import train

    spec = make_spec("mobilenet-tiny", in_channels=1, num_classes=10, input_size=8, width_multiplier=0.5, blocks=3)
    run = train(spec, digits, optimizer="sgd", epochs=1, batch_size=256, seed=0, progress=False, out=tmp_path / "m")
    again = load_run(tmp_path / "m")
    assert again.model_spec == spec
    x = digits.test.x[:5]
    assert torch.equal(run.model.eval()(x), again.model(x))


@pytest.mark.parametrize("name", ["dscnn", "mobilenet-tiny", "vit-tiny", "lstm"])
def test_each_new_model_trains_from_the_command_line(name, tmp_path, capsys):
    from analogsam.cli import main

    assert (
        main(
            [
                "train",
                "--data",
                "digits",
                "--model",
                name,
                "--epochs",
                "1",
                "--train-limit",
                "200",
                "--test-limit",
                "50",
                "--batch-size",
                "50",
                "--out",
                str(tmp_path / name),
                "--quiet",
            ]
        )
        == 0
    )
    assert "wrote run folder" in capsys.readouterr().out and (tmp_path / name / "checkpoint.pt").exists()


def test_text_and_image_models_refuse_the_other_kind_of_data():
    from analogsam.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="'char-lm' reads text and needs its vocabulary"):
        build_model(make_spec("char-lm", in_channels=1, num_classes=10, input_size=28))
    with pytest.raises(InvalidParameterError, match="'lenet5' reads images, not text"):
        build_model(make_spec("lenet5", in_channels=1, num_classes=3, input_size=28, vocabulary="abc"))
    with pytest.raises(InvalidParameterError, match="num_classes 4 differs"):
        build_model(make_spec("char-lm", in_channels=1, num_classes=4, input_size=16, vocabulary="abc"))


def test_char_lm_logits_and_its_vocabulary():
    torch.manual_seed(0)
    model = build_model(make_spec("char-lm", in_channels=1, num_classes=5, input_size=16, vocabulary="\nabc "))
    assert model(torch.randint(0, 5, (3, 16))).shape == (3, 16, 5)
    # 5*32 embedding + 4*256*(32+256) + 8*256 LSTM + 256*5 + 5 decoder
    assert _count(model) == 160 + 294912 + 2048 + 1285
    ids = model.encode("ab c\n")
    assert ids.tolist() == [1, 2, 4, 3, 0] and model.decode(ids) == "ab c\n"
    with pytest.raises(ValueError, match="'z' .* not in the model's vocabulary"):
        model.encode("abz")
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    text = model.generate("ab", 10, generator=g())
    assert len(text) == 12 and text.startswith("ab") and set(text) <= set(model.vocabulary)
    assert model.generate("ab", 10, generator=g()) == text  # seeded
    # greedy generation continues with the most likely next character of the forward's logits
    greedy = model.generate("ab", 1, temperature=0)
    assert greedy[-1] == model.vocabulary[int(model(model.encode("ab")[None])[0, -1].argmax())]
