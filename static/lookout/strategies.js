/* The strategy editor: files in CodeMirror 5, the Strategy Parameters panel (a visual editor of
   config_schema.json with a live run-form preview and a raw JSON view), save, publish and the
   unsaved-changes guard. Also the read-only code views of published versions and the New
   Strategy dialog's reopening after an error. Plain JS; the server checks everything again. */
(function () {
  "use strict";

  var MANAGED_KEYS = ["type", "title", "description", "default", "minimum", "maximum", "enum", "const", "x-lookout-type", "x-lookout-asset-type"];

  function csrfToken() {
    try { return JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRFToken"]; } catch (error) { return ""; }
  }

  function post(url, body, raw) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), "Content-Type": raw ? "text/plain; charset=utf-8" : "application/json" },
      body: raw ? body : JSON.stringify(body),
    });
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else if (key === "className") node.className = attrs[key];
      else if (attrs[key] === true) node.setAttribute(key, "");
      else if (attrs[key] !== false && attrs[key] != null) node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) { node.append(child); });
    return node;
  }

  /* A toast like app.js's, with an optional action link ("Create run"). */
  function toast(level, message, action) {
    var box = document.getElementById("toasts");
    if (!box) return;
    var item = el("div", { className: "toast toast-" + level, role: level === "error" ? "alert" : "status" }, [el("span", { text: message })]);
    if (action) item.append(el("a", { className: "toast-action", href: action.href, text: action.label }));
    item.append(el("button", { type: "button", className: "toast-close", "aria-label": "Dismiss", text: "×" }));
    box.append(item);
    setTimeout(function () { item.remove(); }, action ? 20000 : level === "error" ? 12000 : 6000);
  }

  /* --- read-only code views (version pages) ---------------------------------------------------- */
  function codeViews() {
    if (typeof CodeMirror === "undefined") return;
    document.querySelectorAll("textarea[data-code-view]").forEach(function (area) {
      var mode = area.dataset.mode === "json" ? { name: "javascript", json: true } : "python";
      var view = CodeMirror.fromTextArea(area, { mode: mode, readOnly: true, lineNumbers: true, viewportMargin: Infinity });
      var details = area.closest("details");
      if (details) details.addEventListener("toggle", function () { view.refresh(); });
    });
  }

  /* --- the parameters model: rows <-> config_schema.json ---------------------------------------- */
  function kindOf(definition) {
    if (!definition || typeof definition !== "object" || definition.$ref) return "custom";
    var lookout = definition["x-lookout-type"];
    if (lookout === "symbol") return "symbol";
    if (lookout === "bar_frequency") return "bar_frequency";
    if (definition.type === "string" && Array.isArray(definition.enum)) return "choice";
    if (Array.isArray(definition.enum)) return "custom";
    return { string: "text", integer: "integer", number: "decimal", boolean: "boolean" }[definition.type] || "custom";
  }

  function rowFromProperty(name, definition, required) {
    var kind = kindOf(definition);
    var row = { name: name, kind: kind, required: required, extra: definition, title: "", description: "", defaultText: "", minimum: "", maximum: "", choices: "", assetType: "EQUITY", frequencyMode: "pinned", pinned: "day", allowed: [] };
    if (kind === "custom") return row;
    row.title = definition.title || "";
    row.description = definition.description || "";
    if (definition["default"] !== undefined) row.defaultText = String(definition["default"]);
    if (definition.minimum !== undefined) row.minimum = String(definition.minimum);
    if (definition.maximum !== undefined) row.maximum = String(definition.maximum);
    if (kind === "choice") row.choices = definition.enum.join(", ");
    if (kind === "symbol") row.assetType = definition["x-lookout-asset-type"] || "EQUITY";
    if (kind === "bar_frequency") {
      if (definition["const"] !== undefined) { row.frequencyMode = "pinned"; row.pinned = definition["const"]; }
      else { row.frequencyMode = "choices"; row.allowed = (definition.enum || []).slice(); }
    }
    return row;
  }

  function typedDefault(row) {
    var text = row.defaultText.trim();
    if (text === "") return undefined;
    if (row.kind === "integer" || row.kind === "decimal") {
      var number = Number(text);
      return text !== "" && isFinite(number) ? number : text;  // the server names a bad default
    }
    if (row.kind === "boolean") return text === "true";
    if (row.kind === "symbol") return text.toUpperCase();
    return text;
  }

  function numberOrText(text) {
    var number = Number(text);
    return text.trim() !== "" && isFinite(number) ? number : text;
  }

  function propertyFromRow(row) {
    if (row.kind === "custom") return row.extra;
    var property = {};
    property.type = { text: "string", choice: "string", symbol: "string", bar_frequency: "string", integer: "integer", decimal: "number", boolean: "boolean" }[row.kind];
    if (row.title.trim()) property.title = row.title.trim();
    if (row.description.trim()) property.description = row.description.trim();
    if (row.kind === "symbol") { property["x-lookout-type"] = "symbol"; property["x-lookout-asset-type"] = row.assetType; }
    if (row.kind === "bar_frequency") {
      property["x-lookout-type"] = "bar_frequency";
      if (row.frequencyMode === "pinned") property["const"] = row.pinned;
      else property.enum = row.allowed.slice();
    }
    if (row.kind === "choice") property.enum = row.choices.split(",").map(function (item) { return item.trim(); }).filter(Boolean);
    if (row.kind === "integer" || row.kind === "decimal") {
      if (row.minimum.trim() !== "") property.minimum = numberOrText(row.minimum.trim());
      if (row.maximum.trim() !== "") property.maximum = numberOrText(row.maximum.trim());
    }
    if (row.kind !== "bar_frequency") {
      var value = typedDefault(row);
      if (value !== undefined) property["default"] = value;
    }
    // Keywords the panel does not edit (pattern, minLength, …) are kept as written.
    Object.keys(row.extra || {}).forEach(function (key) {
      if (MANAGED_KEYS.indexOf(key) === -1 && !(key in property)) property[key] = row.extra[key];
    });
    return property;
  }

  /* --- the editor ------------------------------------------------------------------------------ */
  function Editor(root, data) {
    this.root = root;
    this.data = data;
    this.canEdit = data.canEdit;
    this.docs = {};
    this.saved = null;
    this.current = null;
    this.rows = [];
    this.schemaTop = {};
    this.previewTimer = null;
    this.leaving = false;
    var self = this;
    Object.keys(data.files).forEach(function (name) { self.docs[name] = self.makeDoc(name, data.files[name]); });
    this.saved = JSON.stringify(this.files());  // files() sorts by name, as every later comparison does
    this.code = CodeMirror(document.getElementById("code-host"), {
      value: "", mode: "python", lineNumbers: true, indentUnit: 4, tabSize: 4, indentWithTabs: false,
      matchBrackets: true, styleActiveLine: true, readOnly: !this.canEdit,
      extraKeys: { Tab: function (cm) { cm.execCommand(cm.somethingSelected() ? "indentMore" : "insertSoftTab"); }, "Shift-Tab": "indentLess" },
    });
    this.json = CodeMirror(document.getElementById("json-host"), {
      value: "", mode: { name: "javascript", json: true }, lineNumbers: true, indentUnit: 2, tabSize: 2,
      matchBrackets: true, styleActiveLine: true, readOnly: !this.canEdit,
    });
    this.json.swapDoc(this.docs[data.schemaFile]);
    this.loadRowsFromText(this.docs[data.schemaFile].getValue(), true);
    this.renderFileList();
    this.openFile("strategy.py");
    this.wire();
    this.refreshState();
    this.followHash();
  }

  Editor.prototype.makeDoc = function (name, text) {
    var doc = CodeMirror.Doc(text, name === this.data.schemaFile ? { name: "javascript", json: true } : "python");
    var self = this;
    doc.on("change", function () { self.refreshState(); });
    return doc;
  };

  Editor.prototype.files = function () {
    var files = {};
    var self = this;
    Object.keys(this.docs).sort().forEach(function (name) { files[name] = self.docs[name].getValue(); });
    return files;
  };

  Editor.prototype.dirty = function () { return this.saved !== null && JSON.stringify(this.files()) !== this.saved; };

  Editor.prototype.refreshState = function () {
    var state = document.getElementById("save-state");
    if (!state) return;
    var dirty = this.dirty();
    state.textContent = dirty ? "Unsaved changes" : "Saved";
    state.classList.toggle("dirty", dirty);
  };

  Editor.prototype.markSaved = function () {
    this.saved = JSON.stringify(this.files());
    this.refreshState();
  };

  /* files ----------------------------------------------------------------------------------------- */
  Editor.prototype.fileNames = function () {
    var schema = this.data.schemaFile;
    return Object.keys(this.docs).filter(function (name) { return name !== schema; }).sort(function (a, b) {
      if (a === "strategy.py") return -1;
      if (b === "strategy.py") return 1;
      return a < b ? -1 : 1;
    });
  };

  Editor.prototype.renderFileList = function () {
    var list = document.getElementById("file-list");
    var self = this;
    list.replaceChildren();
    this.fileNames().forEach(function (name) {
      var button = el("button", { type: "button", className: "file-entry mono", "data-file": name, role: "option", "aria-selected": String(name === self.current), text: name });
      list.append(el("li", {}, [button]));
    });
    document.getElementById("params-entry").setAttribute("aria-selected", String(this.current === null));
  };

  Editor.prototype.openFile = function (name, line) {
    if (name === this.data.schemaFile) { this.openParams(line ? "json" : null, line); return; }
    if (!this.docs[name]) return;
    this.current = name;
    document.getElementById("params-pane").hidden = true;
    document.getElementById("code-pane").hidden = false;
    this.code.swapDoc(this.docs[name]);
    document.getElementById("current-file").textContent = name;
    var actions = document.getElementById("file-actions");
    if (actions) actions.hidden = this.data.required.indexOf(name) !== -1;
    this.renderFileList();
    this.code.refresh();
    if (line) this.jumpTo(this.code, line);
  };

  Editor.prototype.jumpTo = function (cm, line) {
    var index = Math.max(0, Math.min(line - 1, cm.lineCount() - 1));
    cm.focus();
    cm.setCursor({ line: index, ch: 0 });
    cm.scrollIntoView({ line: index, ch: 0 }, 120);
    cm.addLineClass(index, "background", "error-line");
    setTimeout(function () { cm.removeLineClass(index, "background", "error-line"); }, 4000);
  };

  Editor.prototype.fileAction = function (body) {
    var self = this;
    return post(this.data.urls.files, body).then(function (response) {
      return response.json().then(function (payload) {
        if (!response.ok) { self.showProblems("Not done", payload.errors); return null; }
        self.hideProblems();
        return payload;
      });
    });
  };

  Editor.prototype.addFile = function () {
    var name = window.prompt("Name of the new helper module (letters, digits, _ - . ; ending in .py):", "helpers.py");
    if (name === null) return;
    var self = this;
    this.fileAction({ action: "add", name: name }).then(function (payload) {
      if (!payload) return;
      name = name.trim();
      self.docs[name] = self.makeDoc(name, payload.content);
      self.adoptSaved(name, payload.content);
      self.openFile(name);
    });
  };

  // The server saved one file change; record it as saved without touching other unsaved edits.
  Editor.prototype.adoptSaved = function (name, content, removed) {
    var saved = JSON.parse(this.saved);
    if (removed) delete saved[removed];
    if (name) saved[name] = content;
    this.saved = JSON.stringify(Object.keys(saved).sort().reduce(function (sorted, key) { sorted[key] = saved[key]; return sorted; }, {}));
    this.refreshState();
  };

  Editor.prototype.renameFile = function () {
    var name = this.current;
    var newName = window.prompt("Rename " + name + " to:", name);
    if (newName === null || newName.trim() === name) return;
    var self = this;
    this.fileAction({ action: "rename", name: name, new_name: newName }).then(function (payload) {
      if (!payload) return;
      newName = newName.trim();
      var doc = self.docs[name];
      delete self.docs[name];
      self.docs[newName] = doc;
      self.adoptSaved(newName, payload.content, name);
      self.openFile(newName);
    });
  };

  Editor.prototype.deleteFile = function () {
    var name = this.current;
    if (!window.confirm("Delete " + name + " from the working copy? Published versions keep their copy.")) return;
    var self = this;
    this.fileAction({ action: "delete", name: name }).then(function (payload) {
      if (!payload) return;
      delete self.docs[name];
      self.adoptSaved(null, null, name);
      self.openFile("strategy.py");
    });
  };

  /* save and publish ------------------------------------------------------------------------------ */
  Editor.prototype.save = function () {
    var self = this;
    this.syncSchemaText();
    return post(this.data.urls.save, { files: this.files() }).then(function (response) {
      return response.json().then(function (payload) {
        if (!response.ok) { self.showProblems("Not saved", payload.errors); return false; }
        self.hideProblems();
        self.markSaved();
        toast("success", payload.message);
        return true;
      });
    }).catch(function () { toast("error", "The server cannot be reached: check your connection."); });
  };

  Editor.prototype.publish = function () {
    var self = this;
    var button = document.getElementById("publish-button");
    this.syncSchemaText();
    button.disabled = true;
    var message = document.getElementById("publish-message");
    post(this.data.urls.publish, { files: this.files(), message: message.value }).then(function (response) {
      return response.json().then(function (payload) {
        if (!response.ok) {
          // Publish saves before it checks, so the working copy is saved even when it fails.
          if (response.status !== 403) self.markSaved();
          self.showProblems(response.status === 409 ? "Nothing to publish" : "Publish failed", payload.errors, true);
          return;
        }
        self.hideProblems();
        self.markSaved();
        message.value = "";
        var latest = document.getElementById("latest-version");
        if (latest) {
          latest.replaceChildren("latest ", el("a", { className: "version", href: payload.version_url, text: "v" + payload.version.number }), " published just now");
        }
        toast("success", payload.message, { href: payload.create_run_url, label: "Create run" });
      });
    }).catch(function () { toast("error", "The server cannot be reached: check your connection."); })
      .finally(function () { button.disabled = false; });
  };

  Editor.prototype.showProblems = function (title, errors, jump) {
    var box = document.getElementById("problems");
    var list = document.getElementById("problems-list");
    var self = this;
    document.getElementById("problems-title").textContent = title;
    // Nothing to publish is news, not a failure.
    box.classList.toggle("problems-info", title === "Nothing to publish");
    list.replaceChildren();
    (errors || []).forEach(function (error) {
      var item = el("li");
      if (error.file) {
        var where = error.file + (error.line ? ":" + error.line : "");
        var link = el("button", { type: "button", className: "problem-where mono", "data-file": error.file, "data-line": error.line || "", text: where });
        item.append(link, " ");
      }
      item.append(el("span", { text: error.message }));
      list.append(item);
    });
    box.hidden = false;
    var first = (errors || []).find(function (error) { return error.file && self.hasFile(error.file); });
    if (jump && first) this.openFile(first.file, first.line);
  };

  Editor.prototype.hasFile = function (name) { return name in this.docs; };

  Editor.prototype.hideProblems = function () { document.getElementById("problems").hidden = true; };

  /* parameters panel ------------------------------------------------------------------------------ */
  Editor.prototype.loadRowsFromText = function (text, quiet) {
    var schema;
    try { schema = JSON.parse(text); } catch (error) { schema = null; }
    if (!schema || typeof schema !== "object" || Array.isArray(schema)) {
      if (!quiet) toast("error", "config_schema.json is not valid JSON: fix it in the JSON view.");
      this.rows = null;
      return false;
    }
    var properties = schema.properties && typeof schema.properties === "object" ? schema.properties : {};
    var required = Array.isArray(schema.required) ? schema.required : [];
    this.schemaTop = schema;
    this.rowsEdited = false;
    this.rows = Object.keys(properties).map(function (name) { return rowFromProperty(name, properties[name], required.indexOf(name) !== -1); });
    return true;
  };

  Editor.prototype.schemaFromRows = function () {
    var schema = {};
    var rows = this.rows;
    Object.keys(this.schemaTop).forEach(function (key) { if (key !== "x-lookout-order") schema[key] = this.schemaTop[key]; }, this);
    if (!schema.$schema) schema = Object.assign({ $schema: "http://json-schema.org/draft-07/schema#" }, schema);
    schema.type = "object";
    schema.properties = {};
    rows.forEach(function (row) { schema.properties[row.name] = propertyFromRow(row); });
    var required = rows.filter(function (row) { return row.required; }).map(function (row) { return row.name; });
    if (required.length) schema.required = required; else delete schema.required;
    return schema;
  };

  // The visual rows are the source of truth while the visual view is shown.
  Editor.prototype.syncSchemaText = function () {
    // Untouched rows leave the text as written (its formatting and key order included).
    if (!this.rowsEdited || this.rows === null || document.getElementById("params-json").hidden === false) return;
    var text = JSON.stringify(this.schemaFromRows(), null, 2) + "\n";
    var doc = this.docs[this.data.schemaFile];
    if (doc.getValue() !== text) doc.setValue(text);
  };

  Editor.prototype.paramsChanged = function () {
    this.rowsEdited = true;
    this.syncSchemaText();
    this.schedulePreview();
  };

  Editor.prototype.openParams = function (view, line) {
    this.current = null;
    document.getElementById("code-pane").hidden = true;
    document.getElementById("params-pane").hidden = false;
    this.renderFileList();
    // A schema that does not parse has no rows to show: only its text can be fixed.
    this.showParamsView(this.rows === null ? "json" : view || "visual");
    if (line) this.jumpTo(this.json, line);
  };

  Editor.prototype.showParamsView = function (view) {
    var jsonShown = !document.getElementById("params-json").hidden;
    if (view === "visual" && jsonShown) {
      // Leaving the JSON view: its text becomes the rows (when it parses).
      if (!this.loadRowsFromText(this.docs[this.data.schemaFile].getValue())) return;
    }
    if (view === "json" && !jsonShown) this.syncSchemaText();
    document.getElementById("params-visual").hidden = view !== "visual";
    document.getElementById("params-json").hidden = view !== "json";
    document.getElementById("params-visual-tab").setAttribute("aria-selected", String(view === "visual"));
    document.getElementById("params-json-tab").setAttribute("aria-selected", String(view === "json"));
    if (view === "visual") { this.renderRows(); this.schedulePreview(0); }
    else this.json.refresh();
  };

  Editor.prototype.renderRows = function () {
    var host = document.getElementById("param-rows");
    var self = this;
    host.replaceChildren();
    if (!this.rows.length) host.append(el("p", { className: "muted", text: "No parameters yet." }));
    this.rows.forEach(function (row, index) { host.append(self.renderRow(row, index)); });
  };

  function field(label, control, extraClass) {
    return el("label", { className: "pfield" + (extraClass ? " " + extraClass : "") }, [el("span", { className: "plabel", text: label }), control]);
  }

  Editor.prototype.renderRow = function (row, index) {
    var self = this;
    var disabled = !this.canEdit;
    var card = el("div", { className: "param-row", id: "param-" + row.name, "data-index": String(index) });
    function input(key, attrs) {
      var control = el("input", Object.assign({ type: "text", disabled: disabled }, attrs || {}));
      control.value = row[key];
      control.addEventListener("input", function () {
        row[key] = control.value;
        if (key === "name") card.id = "param-" + row.name;
        self.paramsChanged();
      });
      // The choices feed the default's dropdown: redraw it once the author leaves the field.
      if (key === "choices") control.addEventListener("change", function () { self.renderRows(); });
      return control;
    }
    function select(key, options, rerender) {
      var control = el("select", { disabled: disabled });
      options.forEach(function (option) {
        var item = el("option", { value: option[0], text: option[1] });
        if (String(row[key]) === option[0]) item.selected = true;
        control.append(item);
      });
      control.addEventListener("change", function () {
        row[key] = control.value;
        if (rerender) self.renderRows();
        self.paramsChanged();
      });
      return control;
    }
    var handle = el("span", { className: "drag-handle", title: "Drag to reorder", "aria-hidden": "true", text: this.canEdit ? "⋮⋮" : "" });
    var head = el("div", { className: "param-head" }, [handle]);
    head.append(field("Name", input("name", { className: "mono", "aria-label": "Parameter name", spellcheck: "false" })));
    if (row.kind === "custom") {
      head.append(el("span", { className: "muted small custom-note", text: "Written by hand ($ref or another JSON Schema type): edit it in the JSON view." }));
    } else {
      head.append(field("Type", select("kind", this.data.kinds, true)));
      head.append(field("Label", input("title", { placeholder: row.name })));
      var required = el("input", { type: "checkbox", disabled: disabled });
      required.checked = row.required;
      required.addEventListener("change", function () { row.required = required.checked; self.paramsChanged(); });
      head.append(el("label", { className: "pfield pcheck" }, [required, el("span", { text: "Required" })]));
    }
    if (this.canEdit) {
      var up = el("button", { type: "button", className: "btn-icon", title: "Move up", "aria-label": "Move " + row.name + " up", text: "↑" });
      up.addEventListener("click", function () { self.moveRow(index, index - 1); });
      var remove = el("button", { type: "button", className: "btn-icon", title: "Remove parameter", "aria-label": "Remove " + row.name, text: "×" });
      remove.addEventListener("click", function () { self.rows.splice(index, 1); self.renderRows(); self.paramsChanged(); });
      head.append(el("span", { className: "row-buttons" }, [up, remove]));
    }
    card.append(head);
    if (row.kind === "custom") return this.makeDraggable(card, handle, index);

    var body = el("div", { className: "param-body" });
    body.append(field("Description", input("description", { placeholder: "Shown under the field in the run form" }), "pdesc"));
    if (row.kind === "boolean") {
      body.append(field("Default", select("defaultText", [["", "–"], ["true", "true"], ["false", "false"]])));
    } else if (row.kind === "choice") {
      var choices = row.choices.split(",").map(function (item) { return item.trim(); }).filter(Boolean);
      if (row.defaultText && choices.indexOf(row.defaultText) === -1) choices.push(row.defaultText);  // shown, so the check can name it
      body.append(field("Default", select("defaultText", [["", "–"]].concat(choices.map(function (item) { return [item, item]; })))));
    } else if (row.kind !== "bar_frequency") {
      body.append(field("Default", input("defaultText", { className: row.kind === "symbol" ? "mono upper" : "" })));
    }
    if (row.kind === "integer" || row.kind === "decimal") {
      body.append(field("Min", input("minimum", { inputmode: "decimal" }), "pnarrow"));
      body.append(field("Max", input("maximum", { inputmode: "decimal" }), "pnarrow"));
    }
    if (row.kind === "choice") body.append(field("Choices (comma-separated)", input("choices", { placeholder: "fast, slow" }), "pwide"));
    if (row.kind === "symbol") {
      body.append(field("Asset type", select("assetType", this.data.assetTypes.map(function (type) { return [type, type.charAt(0) + type.slice(1).toLowerCase()]; }))));
    }
    if (row.kind === "bar_frequency") {
      var frequencies = this.data.frequencies.map(function (frequency) { return [frequency, frequency]; });
      body.append(field("Frequency", select("frequencyMode", [["pinned", "Pinned"], ["choices", "Operator chooses"]], true)));
      if (row.frequencyMode === "pinned") {
        body.append(field("Pinned value", select("pinned", frequencies)));
      } else {
        var boxes = el("span", { className: "choice-boxes" });
        this.data.frequencies.forEach(function (frequency) {
          var box = el("input", { type: "checkbox", value: frequency, disabled: disabled });
          box.checked = row.allowed.indexOf(frequency) !== -1;
          box.addEventListener("change", function () {
            row.allowed = self.data.frequencies.filter(function (item) {
              return item === frequency ? box.checked : row.allowed.indexOf(item) !== -1;
            });
            self.paramsChanged();
          });
          boxes.append(el("label", {}, [box, el("span", { text: frequency })]));
        });
        body.append(field("Allowed", boxes, "pwide"));
      }
    }
    card.append(body);
    return this.makeDraggable(card, handle, index);
  };

  Editor.prototype.makeDraggable = function (card, handle, index) {
    if (!this.canEdit) return card;
    var self = this;
    // Only the handle starts a drag, so text in the inputs can still be selected.
    handle.addEventListener("mousedown", function () { card.draggable = true; });
    card.addEventListener("dragstart", function (event) {
      event.dataTransfer.setData("text/plain", String(index));
      event.dataTransfer.effectAllowed = "move";
      card.classList.add("dragging");
    });
    card.addEventListener("dragend", function () { card.draggable = false; card.classList.remove("dragging"); });
    card.addEventListener("dragover", function (event) { event.preventDefault(); card.classList.add("drop-target"); });
    card.addEventListener("dragleave", function () { card.classList.remove("drop-target"); });
    card.addEventListener("drop", function (event) {
      event.preventDefault();
      card.classList.remove("drop-target");
      var from = Number(event.dataTransfer.getData("text/plain"));
      if (!isNaN(from)) self.moveRow(from, index);
    });
    return card;
  };

  Editor.prototype.moveRow = function (from, to) {
    if (to < 0 || to >= this.rows.length || from === to) return;
    var row = this.rows.splice(from, 1)[0];
    this.rows.splice(to, 0, row);
    this.renderRows();
    this.paramsChanged();
  };

  Editor.prototype.addParam = function () {
    var taken = this.rows.map(function (row) { return row.name; });
    var name = "parameter";
    for (var n = 2; taken.indexOf(name) !== -1; n += 1) name = "parameter_" + n;
    this.rows.push(rowFromProperty(name, { type: "string" }, false));
    this.renderRows();
    this.paramsChanged();
    var input = document.querySelector("#param-" + name + " input");
    if (input) { input.focus(); input.select(); }
  };

  Editor.prototype.schedulePreview = function (delay) {
    var self = this;
    clearTimeout(this.previewTimer);
    this.previewTimer = setTimeout(function () { self.preview(); }, delay === undefined ? 400 : delay);
  };

  Editor.prototype.preview = function () {
    var host = document.getElementById("param-preview");
    post(this.data.urls.preview, this.docs[this.data.schemaFile].getValue(), true).then(function (response) {
      return response.text();
    }).then(function (html) {
      host.innerHTML = html;
      if (typeof htmx !== "undefined") htmx.process(host);
    });
  };

  Editor.prototype.applyJson = function () {
    var self = this;
    var text = this.docs[this.data.schemaFile].getValue();
    post(this.data.urls.check, text, true).then(function (response) {
      return response.json().then(function (payload) {
        if (!response.ok) { self.showProblems("The schema has problems", payload.errors, true); return; }
        self.hideProblems();
        self.loadRowsFromText(text);
        document.getElementById("params-json").hidden = true;  // the text was just applied as it is
        self.showParamsView("visual");
        toast("success", "Schema checked: " + payload.parameters.length + " parameter(s).");
      });
    });
  };

  Editor.prototype.importFile = function (input) {
    var self = this;
    var file = input.files && input.files[0];
    if (!file) return;
    file.text().then(function (text) {
      self.docs[self.data.schemaFile].setValue(text);
      input.value = "";
      self.applyJson();
    });
  };

  Editor.prototype.followHash = function () {
    var match = location.hash.match(/^#param-(.+)$/);
    if (!match) return;
    var name = decodeURIComponent(match[1]);
    this.openParams("visual");
    var row = document.getElementById("param-" + name);
    if (!row) { toast("warning", "This strategy has no parameter named " + name + "."); return; }
    row.scrollIntoView({ block: "center" });
    row.classList.remove("highlight");
    void row.offsetWidth;  // restart the animation when the same row is asked for again
    row.classList.add("highlight");
    var first = row.querySelector("input, select");
    if (first) first.focus({ preventScroll: true });
  };

  Editor.prototype.wire = function () {
    var self = this;
    this.root.addEventListener("click", function (event) {
      var file = event.target.closest(".file-entry[data-file], .problem-where[data-file]");
      if (file) { self.openFile(file.dataset.file, Number(file.dataset.line) || null); return; }
      if (event.target.closest("#params-entry")) { self.openParams(); return; }
      var view = event.target.closest("[data-params-view]");
      if (view) { self.showParamsView(view.dataset.paramsView); return; }
      var id = event.target.closest("button") && event.target.closest("button").id;
      if (id === "save-button") self.save();
      else if (id === "publish-button") self.publish();
      else if (id === "add-file") self.addFile();
      else if (id === "rename-file") self.renameFile();
      else if (id === "delete-file") self.deleteFile();
      else if (id === "add-param") self.addParam();
      else if (id === "apply-json") self.applyJson();
      else if (id === "problems-close") self.hideProblems();
    });
    var importer = document.getElementById("import-schema");
    if (importer) importer.addEventListener("change", function () { self.importFile(importer); });
    document.addEventListener("keydown", function (event) {
      if ((event.ctrlKey || event.metaKey) && event.key === "s" && self.canEdit) { event.preventDefault(); self.save(); }
    });
    window.addEventListener("hashchange", function () { self.followHash(); });

    /* unsaved changes: closing or reloading the tab, links, and htmx navigation */
    window.addEventListener("beforeunload", function (event) {
      self.syncSchemaText();
      if (self.leaving || !self.canEdit || !self.dirty()) return;
      event.preventDefault();
      event.returnValue = "";
    });
    document.addEventListener("click", function (event) {
      var link = event.target.closest("a[href]");
      if (!link || link.target === "_blank" || event.defaultPrevented || !self.canEdit) return;
      if (link.getAttribute("href").charAt(0) === "#") return;
      self.syncSchemaText();
      if (!self.dirty()) return;
      if (window.confirm("You have unsaved changes in this strategy. Leave without saving?")) self.leaving = true;
      else event.preventDefault();
    });
    document.addEventListener("htmx:confirm", function (event) {
      var verb = event.detail.verb || (event.detail.requestConfig && event.detail.requestConfig.verb);
      var navigates = event.detail.elt && (event.detail.elt.hasAttribute("hx-push-url") || event.detail.elt.hasAttribute("hx-boost"));
      if (verb !== "get" || !navigates || !self.canEdit) return;
      self.syncSchemaText();
      if (self.dirty() && !window.confirm("You have unsaved changes in this strategy. Leave without saving?")) event.preventDefault();
    });
  };

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("dialog[data-open-on-load]").forEach(function (dialog) { dialog.showModal(); });
    codeViews();
    var root = document.getElementById("strategy-editor");
    var data = document.getElementById("editor-data");
    if (root && data && typeof CodeMirror !== "undefined") window.lookoutEditor = new Editor(root, JSON.parse(data.textContent));
  });
})();
