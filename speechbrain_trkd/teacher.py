"""A frozen speaker-classification teacher for knowledge distillation.

``FrozenTeacher`` wraps the four parts of a SpeechBrain speaker model (feature
extractor, feature normalisation, embedding network and cosine classifier) so
that they never train: no gradients, eval mode whatever ``train()`` is called
with. ``class_index_map`` aligns the teacher's speaker classes with the
student's, so that teacher and student logits can be compared class by class
even when the teacher was trained on more speakers (e.g. the Hub ECAPA teacher
knows the 7,205 VoxCeleb1+2 speakers, a VoxCeleb2 student 5,994).

Authors
 * speechbrain-trkd developers 2026
"""

import torch

_MAX_MISSING_SHOWN = 5


class FrozenTeacher(torch.nn.Module):
    """A speaker model kept frozen and in eval mode, outputs in student order.

    Arguments
    ---------
    compute_features : torch.nn.Module
        Waveform-to-features module of the teacher (e.g. ``Fbank``).
    mean_var_norm : torch.nn.Module or None
        Feature normalisation called as ``mean_var_norm(feats, wav_lens)``,
        or None to skip it.
    embedding_model : torch.nn.Module
        Embedding network called as ``embedding_model(feats, wav_lens)``,
        returning ``[batch, 1, emb_dim]`` (ECAPA_TDNN, ResNet, ...).
    classifier : torch.nn.Module
        Cosine classifier mapping embeddings to ``[batch, 1, n_classes]``
        cosine similarities (e.g. ``ECAPA_TDNN.Classifier``).
    class_index : torch.Tensor, optional
        Teacher class of each student class (see ``set_class_index``).

    Example
    -------
    >>> from speechbrain.lobes.features import Fbank
    >>> from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier
    >>> from speechbrain.processing.features import InputNormalization
    >>> teacher = FrozenTeacher(
    ...     Fbank(n_mels=24),
    ...     InputNormalization(norm_type="sentence", std_norm=False),
    ...     ECAPA_TDNN(24, channels=[16, 16, 16, 16, 48], lin_neurons=32),
    ...     Classifier(32, out_neurons=10),
    ... )
    >>> teacher.set_class_index(torch.tensor([7, 2, 5]))
    >>> emb, cosine = teacher(torch.randn(2, 8000), torch.tensor([1.0, 0.7]))
    >>> emb.shape, cosine.shape
    (torch.Size([2, 1, 32]), torch.Size([2, 1, 3]))
    >>> _ = teacher.train()
    >>> teacher.training, emb.requires_grad
    (False, False)
    """

    def __init__(
        self,
        compute_features,
        mean_var_norm,
        embedding_model,
        classifier,
        class_index=None,
    ):
        super().__init__()
        self.compute_features = compute_features
        self.mean_var_norm = mean_var_norm
        self.embedding_model = embedding_model
        self.classifier = classifier
        # Not persistent: the teacher is never checkpointed, and its
        # state_dict stays loadable from plain pretrained weights.
        self.register_buffer("class_index", None, persistent=False)
        for param in self.parameters():
            param.requires_grad_(False)
        super().train(False)
        if class_index is not None:
            self.set_class_index(class_index)

    def train(self, mode=True):
        """Keeps the teacher in eval mode, whatever ``mode`` is.

        SpeechBrain's ``Brain.fit`` calls ``train()`` on its modules every
        epoch; the teacher must keep its dropout off and its normalisation
        statistics fixed.

        Arguments
        ---------
        mode : bool
            Ignored.

        Returns
        -------
        FrozenTeacher
            self, in eval mode.

        Example
        -------
        >>> from speechbrain.lobes.models.ECAPA_TDNN import Classifier
        >>> teacher = FrozenTeacher(
        ...     torch.nn.Identity(),
        ...     None,
        ...     torch.nn.Identity(),
        ...     Classifier(4, out_neurons=3),
        ... )
        >>> teacher.train(True).training
        False
        """
        del mode
        return super().train(False)

    @property
    def num_teacher_classes(self):
        """Number of classes of the wrapped classifier (None if unknown).

        Read from the classifier's ``weight`` (``[n_classes, emb_dim]`` in
        SpeechBrain's cosine classifiers).

        Example
        -------
        >>> from speechbrain.lobes.models.ECAPA_TDNN import Classifier
        >>> teacher = FrozenTeacher(
        ...     torch.nn.Identity(),
        ...     None,
        ...     torch.nn.Identity(),
        ...     Classifier(4, out_neurons=9),
        ... )
        >>> teacher.num_teacher_classes
        9
        """
        weight = getattr(self.classifier, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.dim() == 2:
            return weight.shape[0]
        return None

    @property
    def num_classes(self):
        """Number of classes in the output (the student's once aligned).

        Example
        -------
        >>> from speechbrain.lobes.models.ECAPA_TDNN import Classifier
        >>> teacher = FrozenTeacher(
        ...     torch.nn.Identity(),
        ...     None,
        ...     torch.nn.Identity(),
        ...     Classifier(4, out_neurons=9),
        ... )
        >>> teacher.set_class_index([0, 3])
        >>> teacher.num_classes
        2
        """
        if self.class_index is not None:
            return self.class_index.numel()
        return self.num_teacher_classes

    def set_class_index(self, class_index):
        """Sets which teacher class stands for each student class.

        After this call the teacher's cosine output is
        ``cosine[..., class_index]``: column ``i`` is the teacher's score for
        the student's class ``i``. The index is a buffer, so it follows
        ``.to(device)``.

        Arguments
        ---------
        class_index : torch.Tensor or list of int or None
            1-D integer index of distinct teacher classes, e.g. from
            ``class_index_map``; None restores the teacher's own classes.

        Example
        -------
        >>> from speechbrain.lobes.models.ECAPA_TDNN import Classifier
        >>> teacher = FrozenTeacher(
        ...     torch.nn.Identity(),
        ...     None,
        ...     torch.nn.Identity(),
        ...     Classifier(4, out_neurons=9),
        ... )
        >>> teacher.set_class_index(torch.tensor([8, 0]))
        >>> teacher.class_index
        tensor([8, 0])
        >>> teacher.set_class_index([9])
        Traceback (most recent call last):
        ...
        ValueError: class_index refers to teacher class 9 (position 0), ...
        """
        if class_index is None:
            self.class_index = None
            return
        index = torch.as_tensor(class_index)
        if index.dim() != 1 or index.numel() == 0:
            raise ValueError(
                "class_index must be a non-empty 1-D tensor, got shape "
                f"{tuple(index.shape)}"
            )
        if index.dtype == torch.bool or index.is_floating_point():
            raise TypeError(
                f"class_index must hold integers, got dtype {index.dtype}"
            )
        index = index.long()
        bad = (index < 0).nonzero()
        if bad.numel() > 0:
            pos = bad[0].item()
            raise ValueError(
                f"class_index holds a negative teacher class "
                f"{index[pos].item()} (position {pos})"
            )
        n_teacher = self.num_teacher_classes
        if n_teacher is not None:
            bad = (index >= n_teacher).nonzero()
            if bad.numel() > 0:
                pos = bad[0].item()
                raise ValueError(
                    f"class_index refers to teacher class "
                    f"{index[pos].item()} (position {pos}), but the teacher "
                    f"classifier has {n_teacher} classes"
                )
        if torch.unique(index).numel() != index.numel():
            raise ValueError(
                "class_index maps several student classes to the same "
                "teacher class"
            )
        device = next(
            (p.device for p in self.parameters()), torch.device("cpu")
        )
        self.class_index = index.to(device)

    @torch.no_grad()
    def forward(self, wavs, wav_lens=None):
        """Computes the teacher's embeddings and cosine scores (no gradient).

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms, ``[batch, time]``.
        wav_lens : torch.Tensor, optional
            Relative lengths in ``(0, 1]``, ``[batch]``; all ones if omitted.

        Returns
        -------
        embeddings : torch.Tensor
            ``[batch, 1, emb_dim]``.
        cosine : torch.Tensor
            ``[batch, 1, n_classes]`` cosine similarities, columns in the
            student's class order once ``set_class_index`` was called.

        Example
        -------
        >>> from speechbrain.lobes.models.ECAPA_TDNN import Classifier
        >>> teacher = FrozenTeacher(
        ...     lambda w: w.unsqueeze(1),
        ...     None,
        ...     lambda f, lens: f,
        ...     Classifier(4, out_neurons=6),
        ... )
        >>> emb, cosine = teacher(torch.randn(3, 4))
        >>> cosine.shape
        torch.Size([3, 1, 6])
        """
        if wavs.dim() != 2:
            raise ValueError(
                "FrozenTeacher expects waveforms of shape [batch, time], got "
                f"{tuple(wavs.shape)}"
            )
        embeddings = self.embed(wavs, wav_lens)
        return embeddings, self.classify(embeddings)

    @torch.no_grad()
    def embed(self, wavs, wav_lens=None):
        """The teacher's embeddings alone (features, normalisation, network).

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms, ``[batch, time]``.
        wav_lens : torch.Tensor, optional
            Relative lengths in ``(0, 1]``, ``[batch]``; all ones if omitted.

        Returns
        -------
        torch.Tensor
            ``[batch, 1, emb_dim]``.

        Example
        -------
        >>> from speechbrain.lobes.models.ECAPA_TDNN import Classifier
        >>> teacher = FrozenTeacher(
        ...     lambda w: w.unsqueeze(1),
        ...     None,
        ...     lambda f, lens: f,
        ...     Classifier(4, out_neurons=6),
        ... )
        >>> teacher.embed(torch.randn(3, 4)).shape
        torch.Size([3, 1, 4])
        """
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0], device=wavs.device)
        feats = self.compute_features(wavs)
        if self.mean_var_norm is not None:
            feats = self.mean_var_norm(feats, wav_lens)
        return self.embedding_model(feats, wav_lens)

    @torch.no_grad()
    def classify(self, embeddings):
        """Cosine scores of (e.g. cached) teacher embeddings.

        Arguments
        ---------
        embeddings : torch.Tensor
            ``[batch, 1, emb_dim]`` or ``[batch, emb_dim]``.

        Returns
        -------
        torch.Tensor
            ``[batch, 1, n_classes]``, in the student's class order once
            ``set_class_index`` was called.

        Example
        -------
        >>> from speechbrain.lobes.models.ECAPA_TDNN import Classifier
        >>> teacher = FrozenTeacher(
        ...     torch.nn.Identity(), None, torch.nn.Identity(),
        ...     Classifier(4, out_neurons=6), class_index=[5, 1])
        >>> teacher.classify(torch.randn(3, 4)).shape
        torch.Size([3, 1, 2])
        """
        if embeddings.dim() == 2:
            embeddings = embeddings.unsqueeze(1)
        cosine = self.classifier(embeddings)
        if self.class_index is not None:
            cosine = cosine.index_select(-1, self.class_index)
        return cosine


def class_index_map(teacher_encoder, student_encoder):
    """Finds the teacher class of every student class, in student order.

    Arguments
    ---------
    teacher_encoder : speechbrain.dataio.encoder.CategoricalEncoder
        Label encoder of the teacher (e.g. its ``label_encoder.txt``).
    student_encoder : speechbrain.dataio.encoder.CategoricalEncoder
        Label encoder of the student; its indices must run from 0 to
        ``len(student_encoder) - 1``.

    Returns
    -------
    torch.LongTensor
        ``idx`` of length ``len(student_encoder)`` such that
        ``teacher_cosine[..., idx]`` is in the student's class order.

    Example
    -------
    >>> from speechbrain.dataio.encoder import CategoricalEncoder
    >>> teacher_enc = CategoricalEncoder()
    >>> teacher_enc.update_from_iterable(["id1", "id2", "id3", "id4"])
    >>> student_enc = CategoricalEncoder()
    >>> student_enc.update_from_iterable(["id4", "id2"])
    >>> class_index_map(teacher_enc, student_enc)
    tensor([3, 1])
    >>> student_enc.add_label("id9")
    2
    >>> class_index_map(teacher_enc, student_enc)
    Traceback (most recent call last):
    ...
    ValueError: 1 of the student's 3 speakers are missing ...: 'id9'
    """
    n_student = len(student_encoder.ind2lab)
    if n_student == 0:
        raise ValueError("the student's label encoder is empty")
    if sorted(student_encoder.ind2lab) != list(range(n_student)):
        raise ValueError(
            "the student's label encoder indices must run from 0 to "
            f"{n_student - 1} without gaps"
        )
    labels = [student_encoder.ind2lab[i] for i in range(n_student)]
    teacher_lab2ind = teacher_encoder.lab2ind
    missing = [label for label in labels if label not in teacher_lab2ind]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:_MAX_MISSING_SHOWN])
        more = ", ..." if len(missing) > _MAX_MISSING_SHOWN else ""
        raise ValueError(
            f"{len(missing)} of the student's {n_student} speakers are "
            f"missing from the teacher's label encoder: {shown}{more}"
        )
    return torch.tensor(
        [teacher_lab2ind[label] for label in labels], dtype=torch.long
    )
