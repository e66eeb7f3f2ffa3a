// Hides the widgets that a node's current mode ignores (the factor and size of an Upscale node in "model scale"
// mode, the Poisson strength of Gaussian noise, ...) so that no node shows a number it does not use. Values are kept
// and still saved with the workflow; a widget whose value comes from a link, or whose mode comes from one, stays.

import { app } from "../../scripts/app.js";

// node id -> mode widget -> widget it governs -> the mode values that use it. Strict JSON between the markers:
// tests/nodes/test_frontend_extension.py checks it against the nodes' inputs.
// RULES BEGIN
const RULES = {
  "RealESR_Upscale": {
    "size_mode": {"factor": ["factor"], "size": ["width", "height", "longest side"]}
  },
  "RealESR_UpscaleVideo": {
    "codec": {"crf": ["libx264", "libx265", "libsvtav1"], "preset": ["libx264", "libx265", "libsvtav1"]}
  },
  "RealESR_Noise": {
    "noise": {"sigma": ["gaussian"], "poisson_scale": ["poisson"]}
  },
  "RealESR_Blur": {
    "kernel": {
      "kernel_size": ["iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso", "sinc"],
      "sigma_x": ["iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"],
      "sigma_y": ["aniso", "generalized_aniso", "plateau_aniso"],
      "rotation": ["aniso", "generalized_aniso", "plateau_aniso"],
      "beta": ["generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"],
      "cutoff": ["sinc"]
    }
  }
};
// RULES END

function linked(node, widgetName) {
  return (node.inputs ?? []).some((input) => input.widget?.name === widgetName && input.link != null);
}

function showUsedWidgets(node) {
  const rules = RULES[node.comfyClass] ?? {};
  let changed = false;
  for (const [modeName, governed] of Object.entries(rules)) {
    const mode = node.widgets?.find((widget) => widget.name === modeName);
    if (!mode) continue;
    for (const [name, usedIn] of Object.entries(governed)) {
      const widget = node.widgets.find((candidate) => candidate.name === name);
      if (!widget) continue;
      const hidden = !linked(node, modeName) && !linked(node, name) && !usedIn.includes(mode.value);
      if (Boolean(widget.hidden) !== hidden) {
        widget.hidden = hidden;
        changed = true;
      }
    }
  }
  if (changed) {
    node.setSize([node.size[0], node.computeSize()[1]]);
    node.setDirtyCanvas?.(true, true);
  }
}

app.registerExtension({
  name: "realesr.modeWidgets",
  rules: RULES,
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const rules = RULES[nodeData.name];
    if (!rules) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      for (const modeName of Object.keys(rules)) {
        const mode = this.widgets?.find((widget) => widget.name === modeName);
        if (!mode) continue;
        const callback = mode.callback;
        const node = this;
        mode.callback = function () {
          const answer = callback?.apply(this, arguments);
          showUsedWidgets(node);
          return answer;
        };
      }
      showUsedWidgets(this);
      return result;
    };
    // a loaded workflow sets the saved values after the node was created
    const onConfigure = nodeType.prototype.onConfigure;
    nodeType.prototype.onConfigure = function () {
      const result = onConfigure?.apply(this, arguments);
      showUsedWidgets(this);
      return result;
    };
    const onConnectionsChange = nodeType.prototype.onConnectionsChange;
    nodeType.prototype.onConnectionsChange = function () {
      const result = onConnectionsChange?.apply(this, arguments);
      showUsedWidgets(this);
      return result;
    };
  },
});
