"""Checks at load time that need the models: classes exist, branches exist, templates resolve."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from camera_pod.inference.models import Model
from camera_pod.mpta import templates
from camera_pod.mpta.errors import Issue
from camera_pod.mpta.naming import branch_fields
from camera_pod.mpta.schema import (
    Action,
    Node,
    OcrNode,
    PipelineConfig,
    PostgresUpdateCombined,
    RedisPublish,
    RedisSaveImage,
)
from camera_pod.ocr import recognisers
from camera_pod.ocr.reading import TextReader, TextRules
from detector.kit.errors import PermanentError


@dataclass
class _Checker:
    config: PipelineConfig
    models: dict[str, Model]
    issues: list[Issue]

    def add(self, path: str, problem: str) -> None:
        self.issues.append(Issue(path, problem))

    def classes(self, node: Node | OcrNode) -> tuple[str, ...] | None:
        model = self.models.get(node.modelId)
        return model.names if model is not None else None

    def is_detector(self, node: Node | OcrNode) -> bool:
        model = self.models.get(node.modelId)
        return model is not None and model.task == "detect"

    def check_classes(self, path: str, wanted: list[str] | str | None, known: tuple[str, ...] | None,
                      whose: str) -> None:
        if known is None or wanted is None:
            return
        for name in [wanted] if isinstance(wanted, str) else wanted:
            if name not in known:
                self.add(path, f"class {name!r} is not a class of the {whose} model (has: {', '.join(known)})")

    def check_input(self, path: str, node: Node | OcrNode, parent: Node) -> None:
        """A branch's trigger classes and crop, against its parent's classes."""
        parent_classes = self.classes(parent)
        self.check_classes(f"{path}.triggerClasses", node.triggerClasses, parent_classes, "parent")
        if node.crop:
            if parent_classes is not None and not self.is_detector(parent):
                self.add(f"{path}.crop", "crop needs a detection parent (the parent is a classifier)")
            crop_class = node.cropClass or (node.triggerClasses[0] if node.triggerClasses else None)
            if crop_class is None:
                self.add(f"{path}.cropClass", "crop: true needs cropClass or triggerClasses")
            self.check_classes(f"{path}.cropClass", crop_class, parent_classes, "parent")
        elif node.cropClass:
            self.add(f"{path}.cropClass", "cropClass is set but crop is false")

    def check_node(self, path: str, node: Node | OcrNode, parent: Node | None) -> None:
        if isinstance(node, OcrNode):
            if parent is not None:  # (the root is always a model node)
                self.check_input(path, node, parent)
            return
        own = self.classes(node)
        if own is None:
            return  # its model failed to load; already reported
        if parent is None:
            self.check_classes(f"{path}.triggerClasses", node.triggerClasses, own, "node's own")
        else:
            self.check_input(path, node, parent)
        if self.is_detector(node):
            self.check_classes(f"{path}.expectedClasses", node.expectedClasses, own, "node's own")
        else:
            for key, present in (("branches", node.branches), ("multiClass", node.multiClass),
                                 ("tracking", node.tracking)):
                if present:
                    self.add(f"{path}.{key}", "not applicable to a classification model")
        self.check_actions(path, node)

    def check_actions(self, path: str, node: Node) -> None:
        saves_image = any(isinstance(a, RedisSaveImage) for a in node.actions)
        children = {branch.modelId: branch for branch in node.branches}
        under = {descendant.modelId: descendant for _path, descendant in node.walk()[1:]}
        for list_name, actions in (("actions", node.actions), ("parallelActions", node.parallelActions)):
            image_key_ready = saves_image if list_name == "parallelActions" else False
            for index, action in enumerate(actions):
                action_path = f"{path}.{list_name}[{index}]"
                self.check_action(action_path, node, action, children, under, image_key_ready, list_name)
                image_key_ready = image_key_ready or isinstance(action, RedisSaveImage)

    def check_action(self, path: str, node: Node, action: Action, children: dict[str, Node | OcrNode],
                     under: dict[str, Node | OcrNode], image_key_ready: bool, list_name: str) -> None:
        if isinstance(action, RedisSaveImage | RedisPublish) and self.config.redis is None:
            self.add(path, f"{action.type} needs a \"redis\" section in pipeline.json")
        if isinstance(action, PostgresUpdateCombined) and self.config.postgresql is None:
            self.add(path, f"{action.type} needs a \"postgresql\" section in pipeline.json")
        allowed = set(templates.BASE_PLACEHOLDERS) | ({templates.IMAGE_KEY} if image_key_ready else set())
        if isinstance(action, RedisSaveImage):
            if action.region is not None:
                if self.is_detector(node):
                    self.check_classes(f"{path}.region", action.region, self.classes(node), "node's own")
                elif self.classes(node) is not None:
                    self.add(f"{path}.region", "region needs a detection node")
            self.check_template(f"{path}.key", action.key, allowed, {})
        elif isinstance(action, RedisPublish):
            self.check_template(f"{path}.channel", action.channel, allowed, {})
            self.check_template(f"{path}.message", action.message, allowed, {})
        else:
            if action.waitForBranches and list_name == "actions":
                self.add(f"{path}.waitForBranches", "actions run before branches; use parallelActions to wait")
            for index, branch_id in enumerate(action.waitForBranches):
                if branch_id not in children:
                    self.add(f"{path}.waitForBranches[{index}]",
                             f"{branch_id!r} is not a branch of {node.modelId!r} "
                             f"(branches: {', '.join(children) or 'none'})")
            self.check_template(f"{path}.key_value", action.key_value, allowed, {})
            for column, template in action.fields.items():
                self.check_template(f"{path}.fields.{column}", template, allowed, under)

    def check_template(self, path: str, template: str, allowed: set[str],
                       under: dict[str, Node | OcrNode]) -> None:
        for placeholder in templates.placeholders(template):
            branch_id = placeholder.branch
            if branch_id is None:
                if placeholder.name not in allowed:
                    hint = " (only after a redis_save_image)" if placeholder.name == templates.IMAGE_KEY else ""
                    self.add(path, f"unknown placeholder {{{placeholder.name}}}{hint}")
                continue
            branch = under.get(branch_id)
            if branch is None:
                self.add(path, f"placeholder {{{placeholder.name}}}: {branch_id!r} is not a branch of this node "
                               "(nor under one)")
            elif placeholder.field not in branch_fields(branch):
                self.add(path, f"placeholder {{{placeholder.name}}}: branch {branch_id!r} has no field "
                               f"{placeholder.field!r} (has: {', '.join(sorted(branch_fields(branch)))})")


def _load_models(config: PipelineConfig, root: Path, load_model: Callable[[Path], Model],
                 issues: list[Issue]) -> dict[str, Model]:
    by_file: dict[str, Model | None] = {}
    models: dict[str, Model] = {}
    seen_ids: set[str] = set()
    for path, node in config.pipeline.walk():
        if node.modelId in seen_ids:
            issues.append(Issue(f"{path}.modelId", f"duplicate modelId {node.modelId!r}"))
        seen_ids.add(node.modelId)
        if isinstance(node, OcrNode):
            continue  # its recogniser is loaded by load_readers
        if node.modelFile not in by_file:
            file = root / node.modelFile
            if not file.is_file():
                by_file[node.modelFile] = None
                issues.append(Issue(f"{path}.modelFile", f"file not in archive: {node.modelFile!r}"))
                continue
            try:
                by_file[node.modelFile] = load_model(file)
            except PermanentError as exc:
                by_file[node.modelFile] = None
                issues.append(Issue(f"{path}.modelFile", str(exc)))
                continue
        model = by_file[node.modelFile]
        if model is not None:
            models[node.modelId] = model
    return models


def validate(config: PipelineConfig, root: Path, load_model: Callable[[Path], Model]) -> tuple[
        dict[str, Model], list[Issue]]:
    """Load every model once and check the tree against them; returns models by modelId and issues."""
    issues: list[Issue] = []
    models = _load_models(config, root, load_model, issues)
    checker = _Checker(config, models, issues)
    parents: dict[str, Node | None] = {config.pipeline.modelId: None}
    for path, node in config.pipeline.walk():
        if isinstance(node, Node):
            parents.update((branch.modelId, node) for branch in node.branches)
        checker.check_node(path, node, parents.get(node.modelId))
    return models, issues


def load_readers(config: PipelineConfig, root: Path,
                 pool: recognisers.Recognisers) -> tuple[dict[str, TextReader], list[Issue]]:
    """The recogniser and rules of every text node, by modelId: ``pool``'s bundled recogniser (loaded once, shared)
    or the archive's own recognition model."""
    readers: dict[str, TextReader] = {}
    issues: list[Issue] = []
    for path, node in config.pipeline.walk():
        if not isinstance(node, OcrNode):
            continue
        file = root / node.modelFile if node.modelFile is not None else None
        if file is not None and not file.is_file():
            issues.append(Issue(f"{path}.modelFile", f"file not in archive: {node.modelFile!r}"))
            continue
        try:
            readers[node.modelId] = TextReader(pool.load(file), TextRules.from_node(node))
        except PermanentError as exc:
            issues.append(Issue(f"{path}.modelFile" if file is not None else path, str(exc)))
    return readers, issues
