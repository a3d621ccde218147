"""A zoo of models shaped like keras.io examples and the Keras guides, small enough to
build in seconds. Each is built by Keras 3 and by tf_keras, saved in every format each
writes, and must load, export and serve with Keras's numbers."""

import numpy as np
from oracle_case import Case, floats, ints, masked_steps

VOCAB = 50


def mnist_convnet(k, L):
    """keras.io "Simple MNIST convnet"."""
    return k.Sequential(
        [
            k.Input((14, 14, 1)),
            L.Conv2D(4, 3, activation="relu"),
            L.MaxPooling2D(2),
            L.Conv2D(8, 3, activation="relu"),
            L.MaxPooling2D(2),
            L.Flatten(),
            L.Dropout(0.5),
            L.Dense(10, activation="softmax"),
        ]
    )


def text_cnn(k, L):
    """keras.io "Text classification from scratch": Embedding, Conv1D, global max pool."""
    tokens = k.Input((20,), dtype="int32")
    x = L.Embedding(VOCAB, 8)(tokens)
    x = L.Dropout(0.5)(x)
    x = L.Conv1D(8, 3, padding="valid", activation="relu", strides=2)(x)
    x = L.Conv1D(8, 3, padding="valid", activation="relu", strides=2)(x)
    x = L.GlobalMaxPooling1D()(x)
    x = L.Dense(8, activation="relu")(x)
    return k.Model(tokens, L.Dense(1, activation="sigmoid", name="predictions")(x))


def imdb_lstm(k, L):
    """keras.io "Bidirectional LSTM on IMDB" without the wrapper: masked LSTMs."""
    tokens = k.Input((12,), dtype="int32")
    x = L.Embedding(VOCAB, 8, mask_zero=True)(tokens)
    x = L.LSTM(8, return_sequences=True)(x)
    x = L.LSTM(6)(x)
    return k.Model(tokens, L.Dense(1, activation="sigmoid")(x))


def fasttext(k, L):
    """Bag of embeddings: the masked mean of Embedding(mask_zero) vectors."""
    tokens = k.Input((10,), dtype="int32")
    x = L.Embedding(VOCAB, 8, mask_zero=True)(tokens)
    x = L.GlobalAveragePooling1D()(x)
    return k.Model(tokens, L.Dense(3, activation="softmax")(x))


def residual_block(k, L):
    """keras.io "Image classification from scratch": a residual block with BN."""
    inputs = k.Input((8, 8, 3))
    x = L.Conv2D(8, 3, strides=2, padding="same")(inputs)
    x = L.BatchNormalization()(x)
    x = L.Activation("relu")(x)
    shortcut = x
    x = L.Conv2D(8, 3, padding="same")(x)
    x = L.BatchNormalization()(x)
    x = L.Activation("relu")(x)
    x = L.Conv2D(8, 3, padding="same")(x)
    x = L.BatchNormalization()(x)
    x = L.Add()([x, shortcut])
    x = L.Activation("relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    return k.Model(inputs, L.Dense(4)(x))


def xception_block(k, L):
    """The Xception-style entry block of the same example."""
    inputs = k.Input((16, 16, 3))
    x = L.Rescaling(1.0 / 255)(inputs)
    x = L.Conv2D(8, 3, strides=2, padding="same")(x)
    x = L.BatchNormalization()(x)
    x = L.Activation("relu")(x)
    previous = x
    x = L.Activation("relu")(x)
    x = L.SeparableConv2D(16, 3, padding="same")(x)
    x = L.BatchNormalization()(x)
    x = L.Activation("relu")(x)
    x = L.SeparableConv2D(16, 3, padding="same")(x)
    x = L.BatchNormalization()(x)
    x = L.MaxPooling2D(3, strides=2, padding="same")(x)
    residual = L.Conv2D(16, 1, strides=2, padding="same")(previous)
    x = L.add([x, residual])
    x = L.SeparableConv2D(24, 3, padding="same")(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dropout(0.25)(x)
    return k.Model(inputs, L.Dense(1)(x))


def conv_autoencoder(k, L):
    """keras.io "Convolutional autoencoder for image denoising"."""
    inputs = k.Input((12, 12, 1))
    x = L.Conv2D(4, 3, activation="relu", padding="same")(inputs)
    x = L.MaxPooling2D(2, padding="same")(x)
    x = L.Conv2D(4, 3, activation="relu", padding="same")(x)
    x = L.MaxPooling2D(2, padding="same")(x)
    x = L.Conv2DTranspose(4, 3, strides=2, activation="relu", padding="same")(x)
    x = L.Conv2DTranspose(4, 3, strides=2, activation="relu", padding="same")(x)
    return k.Model(inputs, L.Conv2D(1, 3, activation="sigmoid", padding="same")(x))


def upsampling_autoencoder(k, L):
    """The Keras blog autoencoder: UpSampling2D decoder (nearest and bilinear)."""
    inputs = k.Input((8, 8, 2))
    x = L.Conv2D(4, 3, activation="relu", padding="same")(inputs)
    x = L.MaxPooling2D(2)(x)
    x = L.UpSampling2D(2)(x)
    x = L.Conv2D(4, 3, activation="relu", padding="same")(x)
    x = L.AveragePooling2D(2)(x)
    x = L.UpSampling2D(2, interpolation="bilinear")(x)
    return k.Model(inputs, L.Conv2D(2, 3, activation="sigmoid", padding="same")(x))


def timeseries_fcn(k, L):
    """keras.io "Timeseries classification from scratch": Conv1D + BN + ReLU blocks."""
    inputs = k.Input((24, 1))
    x = inputs
    for filters in (8, 8, 8):
        x = L.Conv1D(filters, 3, padding="same")(x)
        x = L.BatchNormalization()(x)
        x = L.ReLU()(x)
    x = L.GlobalAveragePooling1D()(x)
    return k.Model(inputs, L.Dense(2, activation="softmax")(x))


def multi_input_tickets(k, L):
    """The functional API guide's ticket model: 3 inputs, 2 outputs."""
    title = k.Input((6,), dtype="int32", name="title")
    body = k.Input((10,), dtype="int32", name="body")
    tags = k.Input((4,), name="tags")
    title_features = L.LSTM(6)(L.Embedding(VOCAB, 6)(title))
    body_features = L.LSTM(4)(L.Embedding(VOCAB, 6)(body))
    x = L.concatenate([title_features, body_features, tags])
    priority = L.Dense(1, name="priority")(x)
    department = L.Dense(3, name="department", activation="softmax")(x)
    return k.Model([title, body, tags], [priority, department])


def seq2seq(k, L):
    """keras.io "Character-level recurrent sequence-to-sequence model" (training graph)."""
    encoder_inputs = k.Input((7, 5), name="encoder")
    _, h, c = L.LSTM(8, return_state=True)(encoder_inputs)
    decoder_inputs = k.Input((6, 4), name="decoder")
    decoded = L.LSTM(8, return_sequences=True)(decoder_inputs, initial_state=[h, c])
    return k.Model([encoder_inputs, decoder_inputs], L.Dense(4, activation="softmax")(decoded))


def structured_data(k, L):
    """keras.io structured data: normalised numeric features, an embedded category."""
    numeric = k.Input((5,), name="numeric")
    category = k.Input((1,), dtype="int32", name="category")
    normalizer = L.Normalization(axis=-1)
    normalizer.adapt(np.random.default_rng(1).normal(3.0, 2.0, (64, 5)).astype("float32"))
    embedded = L.Flatten()(L.Embedding(6, 3)(category))
    x = L.concatenate([normalizer(numeric), embedded])
    x = L.Dense(8, activation="relu")(x)
    x = L.Dropout(0.3)(x)
    return k.Model([numeric, category], L.Dense(1, activation="sigmoid")(x))


def mobilenet_block(k, L):
    """A MobileNetV2 inverted residual block: ReLU6, DepthwiseConv2D, Add."""
    inputs = k.Input((8, 8, 4))
    x = L.Conv2D(8, 1, padding="same", use_bias=False)(inputs)
    x = L.BatchNormalization(epsilon=1e-3, momentum=0.999)(x)
    x = L.ReLU(6.0)(x)
    x = L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU(6.0)(x)
    x = L.Conv2D(4, 1, padding="same", use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.Add()([inputs, x])
    return k.Model(inputs, L.GlobalAveragePooling2D(keepdims=True)(x))


def vgg_small(k, L):
    """VGG-style stacks of 3x3 convolutions, channels_first."""
    inputs = k.Input((2, 12, 12))
    x = L.Conv2D(4, 3, padding="same", activation="relu", data_format="channels_first")(inputs)
    x = L.Conv2D(4, 3, padding="same", activation="relu", data_format="channels_first")(x)
    x = L.MaxPooling2D(2, data_format="channels_first")(x)
    x = L.Conv2D(8, 3, padding="same", activation="relu", data_format="channels_first")(x)
    x = L.MaxPooling2D(2, data_format="channels_first")(x)
    x = L.Flatten(data_format="channels_first")(x)
    return k.Model(inputs, L.Dense(5)(L.Dense(16, activation="relu")(x)))


def ct_scan_3d(k, L):
    """keras.io "3D image classification from CT scans"."""
    inputs = k.Input((8, 8, 8, 1))
    x = L.Conv3D(4, 3, activation="relu")(inputs)
    x = L.MaxPooling3D(2)(x)
    x = L.BatchNormalization()(x)
    x = L.GlobalAveragePooling3D()(x)
    x = L.Dense(8, activation="relu")(x)
    return k.Model(inputs, L.Dense(1, activation="sigmoid")(x))


def layer_norm_text(k, L):
    """A token classifier with LayerNormalization and a masked mean."""
    tokens = k.Input((9,), dtype="int32")
    x = L.Embedding(VOCAB, 8, mask_zero=True)(tokens)
    x = L.LayerNormalization(epsilon=1e-6)(x)
    x = L.Dense(8, activation="gelu")(x)
    x = L.GlobalAveragePooling1D()(x)
    return k.Model(tokens, L.Dense(2)(x))


def unet_small(k, L):
    """keras.io "Image segmentation with a U-Net-like architecture", shrunk."""
    inputs = k.Input((16, 16, 3))
    x = L.Conv2D(4, 3, strides=2, padding="same")(inputs)
    x = L.BatchNormalization()(x)
    x = L.Activation("relu")(x)
    skip = x
    x = L.SeparableConv2D(8, 3, padding="same")(x)
    x = L.MaxPooling2D(3, strides=2, padding="same")(x)
    x = L.Conv2DTranspose(8, 3, padding="same")(x)
    x = L.UpSampling2D(2)(x)
    x = L.Concatenate()([x, skip])
    x = L.ZeroPadding2D(1)(x)
    x = L.Cropping2D(1)(x)
    x = L.UpSampling2D(2)(x)
    return k.Model(inputs, L.Conv2D(3, 3, activation="softmax", padding="same")(x))


def wide_and_deep(k, L):
    """Wide & deep: a linear part beside an MLP."""
    wide = k.Input((6,), name="wide")
    deep = k.Input((4,), name="deep")
    hidden = L.Dense(8, activation="selu")(deep)
    hidden = L.AlphaDropout(0.1)(hidden)
    hidden = L.Dense(8, activation="elu")(hidden)
    merged = L.concatenate([wide, hidden])
    return k.Model([wide, deep], L.Dense(1)(merged))


def siamese(k, L):
    """keras.io siamese networks: one shared tower, compared by cosine similarity."""
    tower = k.Sequential([k.Input((10,)), L.Dense(8, activation="relu"), L.Dense(6)], name="tower")
    left, right = k.Input((10,), name="left"), k.Input((10,), name="right")
    a, b = tower(left), tower(right)
    cosine = L.Dot(axes=1, normalize=True)([a, b])
    difference = L.Subtract()([a, b])
    return k.Model([left, right], [cosine, L.Dense(1)(difference)])


def _base_model(k, L):
    """An image-model stand-in to fine-tune: batch and layer normalization of equal width,
    so that weights read in the wrong order would still fit their shapes."""
    return k.Sequential(
        [
            k.Input((6,)),
            L.Dense(8),
            L.BatchNormalization(),
            L.Activation("relu"),
            L.Dense(8, activation="tanh"),
            L.LayerNormalization(),
        ],
        name="base",
    )


def frozen_base(k, L):
    """keras.io "Transfer learning & fine-tuning": a frozen base model nested in a new
    one, called with training=False, and a new head."""
    base = _base_model(k, L)
    base.trainable = False
    inputs = k.Input((6,))
    return k.Model(inputs, L.Dense(3)(base(inputs, training=False)))


def fine_tuning(k, L):
    """The same guide's fine-tuning step: the base's first layers stay frozen. An .h5 file
    lists the nested model's trainable weights before the frozen layers' and the batch
    statistics."""
    base = _base_model(k, L)
    for layer in base.layers[:2]:
        layer.trainable = False
    inputs = k.Input((6,))
    return k.Model(inputs, L.Dense(3)(base(inputs, training=False)))


def weather_lstm(k, L):
    """keras.io "Timeseries forecasting for weather prediction"."""
    inputs = k.Input((12, 4))
    return k.Model(inputs, L.Dense(1)(L.LSTM(8)(inputs)))


def wavenet_block(k, L):
    """WaveNet-style gated dilated causal convolutions with residual connections."""
    inputs = k.Input((16, 2))
    x = L.Conv1D(6, 1)(inputs)
    for rate in (1, 2, 4):
        tanh = L.Conv1D(6, 2, dilation_rate=rate, padding="causal", activation="tanh")(x)
        gate = L.Conv1D(6, 2, dilation_rate=rate, padding="causal", activation="sigmoid")(x)
        x = L.Add()([x, L.Conv1D(6, 1)(L.Multiply()([tanh, gate]))])
    return k.Model(inputs, L.Conv1D(1, 1)(L.Activation("relu")(x)))


def advanced_activations_mlp(k, L):
    """An MLP with the activation layers and noise layers of Keras."""
    return k.Sequential(
        [
            k.Input((8,)),
            L.GaussianNoise(0.1),
            L.Dense(12),
            L.LeakyReLU(),
            L.Dense(12),
            L.PReLU(),
            L.GaussianDropout(0.2),
            L.Dense(12),
            L.ELU(alpha=0.5),
            L.Dense(4),
            L.Softmax(),
        ]
    )


def sequence_reshaping(k, L):
    """Upsampling, cropping and padding along time, then pooling."""
    inputs = k.Input((6, 3))
    x = L.UpSampling1D(2)(inputs)
    x = L.Cropping1D((1, 2))(x)
    x = L.ZeroPadding1D(1)(x)
    x = L.Conv1D(4, 3)(x)
    x = L.AveragePooling1D(2, padding="same")(x)
    x = L.MaxPooling1D(2)(x)
    return k.Model(inputs, L.Flatten()(x))


def augmented_images(k, L):
    """keras.io image classification with augmentation layers in the model."""
    inputs = k.Input((10, 10, 3))
    x = L.RandomFlip("horizontal")(inputs)
    x = L.RandomRotation(0.1)(x)
    x = L.Rescaling(1.0 / 255)(x)
    x = L.Conv2D(4, 3, activation="relu")(x)
    x = L.GlobalMaxPooling2D()(x)
    return k.Model(inputs, L.Dense(2, activation="softmax")(x))


def masked_average_merge(k, L):
    """Two masked token sequences embedded and merged."""
    a = k.Input((7,), dtype="int32", name="question")
    b = k.Input((7,), dtype="int32", name="answer")
    embedding = L.Embedding(VOCAB, 6, mask_zero=True)
    merged = L.Average()([embedding(a), embedding(b)])
    x = L.LSTM(5)(merged)
    return k.Model([a, b], L.Dense(1, activation="sigmoid")(x))


def separable_text(k, L):
    """A depthwise-separable text model."""
    tokens = k.Input((16,), dtype="int32")
    x = L.Embedding(VOCAB, 8)(tokens)
    x = L.SeparableConv1D(8, 3, activation="relu")(x)
    x = L.MaxPooling1D(2)(x)
    x = L.SeparableConv1D(8, 3, activation="relu")(x)
    x = L.GlobalAveragePooling1D()(x)
    return k.Model(tokens, L.Dense(2)(x))


def group_and_unit_norm(k, L):
    """GroupNormalization and UnitNormalization in a small image model."""
    inputs = k.Input((8, 8, 4))
    x = L.Conv2D(8, 3, padding="same")(inputs)
    x = L.GroupNormalization(groups=4)(x)
    x = L.Activation("swish")(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.UnitNormalization()(x)
    return k.Model(inputs, L.Dense(3)(x))


def masking_lstm_stack(k, L):
    """Variable-length sequences with Masking, stacked LSTMs and a timestep classifier."""
    inputs = k.Input((8, 3))
    x = L.Masking()(inputs)
    x = L.LSTM(6, return_sequences=True, go_backwards=True)(x)
    x = L.Dense(4, activation="tanh")(x)
    x = L.LSTM(4, return_sequences=True)(x)
    return k.Model(inputs, L.Dense(2, activation="softmax")(x))


def mask_into_nested_model(k, L):
    """A recurrent model reused as a layer behind Masking: the mask goes in, and the
    nested GRU skips the padded steps as the same layers unnested would."""
    steps = k.Input((6, 3))
    encoder = k.Model(steps, L.GRU(4, return_sequences=True)(steps), name="encoder")
    inputs = k.Input((6, 3))
    return k.Model(inputs, L.Dense(2)(encoder(L.Masking()(inputs))))


def mask_out_of_nested_model(k, L):
    """An embedding model reused as a layer: the mask of its Embedding(mask_zero) comes
    out with its output and reaches the GRU after it."""
    tokens = k.Input((6,), dtype="int32")
    embedder = k.Model(tokens, L.Embedding(4, 3, mask_zero=True)(tokens), name="embedder")
    inputs = k.Input((6,), dtype="int32")
    return k.Model(inputs, L.GRU(3)(embedder(inputs)))


def mask_through_nested_model(k, L):
    """A per-step projection model between an Embedding(mask_zero) and an LSTM: the mask
    passes through it."""
    vectors = k.Input((6, 3))
    projection = k.Model(vectors, L.Dense(4, activation="tanh")(vectors), name="projection")
    inputs = k.Input((6,), dtype="int32")
    x = projection(L.Embedding(4, 3, mask_zero=True)(inputs))
    return k.Model(inputs, L.LSTM(3)(x))


def mask_into_float64_layers(k, L):
    """Masking, then layers of another dtype: a float64 LSTM and GlobalAveragePooling1D,
    and a float32 LSTM after a float64 Dense. Keras converts each input to the layer's
    dtype, records those calls without their mask, and (since 3.14) still hands each the
    mask its input carries."""
    inputs = k.Input((6, 3))
    x = L.Masking()(inputs)
    steps = L.LSTM(3, return_sequences=True, dtype="float64")(x)
    pooled = L.GlobalAveragePooling1D(dtype="float64")(x)
    last = L.LSTM(2)(L.Dense(4, dtype="float64")(x))
    return k.Model(inputs, [steps, pooled, last])


def mask_through_same_dtype_operations(k, L):
    """keras.ops.cast to the tensor's own dtype and convert_to_tensor return the very
    tensor, its mask with it: the pooling and the LSTM after them are masked (a fully
    masked row pools to NaN, as in Keras)."""
    tokens = k.Input((6,), dtype="int32")
    x = L.Embedding(5, 4, mask_zero=True)(tokens)
    pooled = L.GlobalAveragePooling1D()(k.ops.cast(x, "float32"))
    last = L.LSTM(3)(k.ops.convert_to_tensor(x))
    return k.Model(tokens, [pooled, last])


def dict_inputs_and_outputs(k, L):
    """A model built on dicts: its inputs and outputs flatten by sorted key (``zeta``
    before ``alpha``'s output ``z``... sorted: alpha, beta / w, z), as Keras flattens them."""
    alpha, beta = k.Input((3,), name="alpha"), k.Input((2,), name="beta")
    joined = L.Concatenate()([L.Dense(4)(alpha), beta])
    return k.Model(
        {"zeta": alpha, "beta": beta},
        {"z": L.Dense(2, name="zed")(joined), "w": L.Dense(3, name="double_u")(beta)},
    )


def mask_into_mixed_precision_gru(k, L):
    """An Embedding(mask_zero) into a GRU of its own mixed_float16 policy."""
    tokens = k.Input((6,), dtype="int32")
    x = L.Embedding(5, 4, mask_zero=True)(tokens)
    return k.Model(tokens, L.GRU(3, dtype="mixed_float16")(x))


def conv1d_transpose_decoder(k, L):
    """A 1D decoder: Conv1DTranspose and Conv3DTranspose-free upsampling of signals."""
    latent = k.Input((4, 3))
    x = L.Conv1DTranspose(6, 3, strides=2, padding="same", activation="relu")(latent)
    x = L.Conv1DTranspose(4, 3, strides=2, padding="valid")(x)
    return k.Model(latent, L.Conv1D(1, 3, padding="same")(x))


CASES = [
    Case("mnist_convnet", mnist_convnet),
    Case("text_cnn", text_cnn, inputs=[ints(0, VOCAB)]),
    Case("imdb_lstm", imdb_lstm, inputs=[ints(0, VOCAB)]),
    Case("fasttext", fasttext, inputs=[ints(0, VOCAB)]),
    Case("residual_block", residual_block),
    Case("xception_block", xception_block, inputs=[floats(60.0, 120.0)]),
    Case("conv_autoencoder", conv_autoencoder),
    Case("upsampling_autoencoder", upsampling_autoencoder),
    Case("timeseries_fcn", timeseries_fcn),
    Case(
        "multi_input_tickets",
        multi_input_tickets,
        inputs=[ints(0, VOCAB), ints(0, VOCAB), floats()],
    ),
    Case("seq2seq", seq2seq),
    Case("structured_data", structured_data, inputs=[floats(2.0, 3.0), ints(0, 6)]),
    Case("mobilenet_block", mobilenet_block),
    Case("vgg_small", vgg_small),
    Case("ct_scan_3d", ct_scan_3d),
    Case("layer_norm_text", layer_norm_text, inputs=[ints(0, VOCAB)]),
    Case("unet_small", unet_small),
    Case("wide_and_deep", wide_and_deep),
    Case("siamese", siamese),
    Case("frozen_base", frozen_base),
    Case("fine_tuning", fine_tuning),
    Case("weather_lstm", weather_lstm),
    Case("wavenet_block", wavenet_block),
    Case("advanced_activations_mlp", advanced_activations_mlp),
    Case("sequence_reshaping", sequence_reshaping),
    Case("augmented_images", augmented_images, inputs=[floats(60.0, 120.0)]),
    Case("masked_average_merge", masked_average_merge, inputs=[ints(0, 8), ints(0, 8)]),
    Case("separable_text", separable_text, inputs=[ints(0, VOCAB)]),
    Case("group_and_unit_norm", group_and_unit_norm),
    Case("masking_lstm_stack", masking_lstm_stack, inputs=[masked_steps()]),
    Case("conv1d_transpose_decoder", conv1d_transpose_decoder),
    Case("mask_into_nested_model", mask_into_nested_model, inputs=[masked_steps()]),
    Case("mask_out_of_nested_model", mask_out_of_nested_model, inputs=[ints(0, 4)]),
    Case("mask_through_nested_model", mask_through_nested_model, inputs=[ints(0, 4)]),
    Case(
        "mask_into_float64_layers",
        mask_into_float64_layers,
        inputs=[masked_steps()],
        dtype_differs="JAX without x64 computes float64 layers in float32; the file says float64",
    ),
    Case(
        "mask_through_same_dtype_operations",
        mask_through_same_dtype_operations,
        inputs=[ints(0, 5)],
        flavours=("keras3",),
    ),
    Case("dict_inputs_and_outputs", dict_inputs_and_outputs),
    # float16 steps: the README's mixed-precision tolerance
    Case(
        "mask_into_mixed_precision_gru",
        mask_into_mixed_precision_gru,
        inputs=[ints(0, 5)],
        atol=2e-3,
        dtype_differs="mixed precision answers float32 (README: mixed precision)",
    ),
]
