"""The YT8M model zoo (Keras 3): families by name in ``registry``, each with a "small" preset
(CPU tests) and a "published" preset (the 2017/2018 winners' size, see ``sizes``); netvlad, lstm
and gru also a "cpu" preset (beats mean pooling on synthetic data in minutes on a CPU).

video level: ``logistic``, ``moe``, ``resnet_like``;
frame level: ``dbof``, ``soft_dbof``, ``gated_soft_dbof``, ``netvlad``, ``netrvlad``, ``netfv``,
``lstm``, ``gru``, ``transformer``; the 2018 2nd place's (``second_place``): ``attention_net``,
``bilstm_attention``, ``frame_conv_max``, ``vlad_bow``; ``frame_mil`` (``mil``: per-window class
logits pooled over time, not a challenge entry). Every model maps its inputs to probabilities ``[B, C]``.
"""
