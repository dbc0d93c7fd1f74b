// outreach studio: the page's behaviour. Plain browser JavaScript, no build step, no libraries.
// Everything it shows comes from the JSON API of outreach/studio/server.py.
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);

const state = {
  catalog: null,
  target: "",
  locales: [],
  customer: "sample",
  record: "",
  at: "",
  fingerprint: "",
  previews: [],
};

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

async function getJSON(url, options) {
  const response = await fetch(url, options);
  let body = {};
  try {
    body = await response.json();
  } catch (error) {
    body = { error: `${response.status} ${response.statusText}` };
  }
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

// -- where we are: kept in the address, so a reload or a shared link shows the same view -------

function saveState() {
  const params = new URLSearchParams();
  if (state.target) params.set("target", state.target);
  params.set("locales", state.locales.join(","));
  params.set("customer", state.customer);
  if (state.record) params.set("record", state.record);
  if (state.at) params.set("at", state.at);
  history.replaceState(null, "", `#${params}`);
}

function loadState() {
  const params = new URLSearchParams(location.hash.slice(1));
  state.target = params.get("target") || "";
  state.locales = (params.get("locales") || "").split(",").filter(Boolean);
  state.customer = params.get("customer") || "sample";
  state.record = params.get("record") || "";
  state.at = params.get("at") || "";
}

// -- the catalog: sidebar, customers, languages, test recipients ------------------------------

function problemBadge(counts) {
  if (counts.error) return el("span", { class: "count error", title: `${counts.error} error(s)`, text: counts.error });
  if (counts.warning) {
    return el("span", { class: "count warning", title: `${counts.warning} warning(s)`, text: counts.warning });
  }
  return el("span", { class: "count ok", title: "no problems", text: "✓" });
}

function renderTargets() {
  const filter = $("#filter").value.trim().toLowerCase();
  for (const [listId, entries] of [["#rules", state.catalog.rules], ["#templates", state.catalog.templates]]) {
    const list = $(listId);
    list.replaceChildren();
    for (const entry of entries) {
      const haystack = `${entry.name} ${entry.template} ${entry.description}`.toLowerCase();
      if (filter && !haystack.includes(filter)) continue;
      const meta = entry.kind === "rule"
        ? `${entry.template} · about ${entry.about} · ${entry.channels.join(", ")}`
        : entry.used_by.length ? `used by ${entry.used_by.join(", ")}` : "no rule uses it";
      const button = el(
        "button",
        {
          type: "button",
          class: `target${entry.id === state.target ? " selected" : ""}`,
          "data-target": entry.id,
          title: entry.description || entry.files.join("\n"),
          onclick: () => selectTarget(entry.id),
        },
        el("span", { class: "name", text: entry.name }),
        problemBadge(entry.problems),
        el("span", { class: "meta", text: meta }),
      );
      list.append(el("li", {}, button));
    }
    if (!list.children.length) list.append(el("li", { class: "empty muted", text: filter ? "nothing matches" : "none" }));
  }
  const rulesProblems = $("#rules-problems");
  rulesProblems.hidden = !state.catalog.rules_problems.length;
  rulesProblems.replaceChildren(
    el("strong", { text: `${state.catalog.rules_problems.length} problem(s) in the rules files` }),
    ...state.catalog.rules_problems.map((p) => el("div", { class: "where", text: p.text })),
  );
}

function renderCustomers() {
  const select = $("#customer");
  const previous = [...select.querySelectorAll("option[data-source=database]")];
  select.replaceChildren();
  const samples = el("optgroup", { label: "Samples (no database needed)" });
  for (const customer of state.catalog.samples) {
    const label = customer.source === "sample" ? customer.name : `${customer.name} · ${customer.id} · ${customer.locale}`;
    samples.append(el("option", { value: customer.id, "data-locale": customer.locale || "", text: label }));
  }
  select.append(samples);
  const found = el("optgroup", { label: "From the database", id: "database-customers" });
  for (const option of previous) found.append(option);
  select.append(found);
  ensureCustomerOption(state.customer);
  select.value = state.customer;
}

function ensureCustomerOption(id, label, locale) {
  const select = $("#customer");
  if ([...select.options].some((option) => option.value === id)) return;
  $("#database-customers").append(
    el("option", { value: id, "data-source": "database", "data-locale": locale || "", text: label || id }),
  );
}

function renderLocales() {
  const group = $("#locales");
  group.replaceChildren();
  const all = state.catalog.locales;
  const pairs = all.length > 1 ? [[all[0], all[1]]] : [];
  const current = state.locales.join(",");
  for (const locale of all) {
    group.append(el("button", {
      type: "button",
      id: `locale-${locale}`,
      class: current === locale ? "on" : "",
      "aria-pressed": current === locale ? "true" : "false",
      text: locale,
      onclick: () => setLocales([locale]),
    }));
  }
  for (const pair of pairs) {
    const on = current === pair.join(",");
    group.append(el("button", {
      type: "button",
      id: "locale-both",
      class: `pair${on ? " on" : ""}`,
      "aria-pressed": on ? "true" : "false",
      title: "Side by side",
      text: `${pair[0]} | ${pair[1]}`,
      onclick: () => setLocales(pair),
    }));
  }
  const sendLocale = $("#send-locale");
  const chosen = sendLocale.value;
  sendLocale.replaceChildren(...all.map((l) => el("option", { value: l, text: l })));
  sendLocale.value = state.locales.includes(chosen) ? chosen : state.locales[0] || all[0];
}

function renderHeader() {
  const catalog = state.catalog;
  $("#company").textContent = catalog.company;
  $("#mode").textContent = `sends to: ${catalog.mode}`;
  $("#mode").className = `badge mode-${catalog.mode}`;
  $("#smart").textContent = catalog.smart_encoding ? "Smart Encoding on" : "Smart Encoding off";
  const recipients = $("#recipients");
  recipients.replaceChildren(...catalog.test_recipients.map((r) => el("option", { value: r })));
  if (!$("#send-to").value && catalog.test_recipients.length) $("#send-to").value = catalog.test_recipients[0];
}

async function loadCatalog() {
  state.catalog = await getJSON("/api/catalog");
  const all = [...state.catalog.rules, ...state.catalog.templates];
  if (!all.some((entry) => entry.id === state.target)) state.target = all.length ? all[0].id : "";
  const known = state.catalog.locales;
  state.locales = state.locales.filter((l) => known.includes(l));
  if (!state.locales.length) state.locales = [state.catalog.default_locale];
  renderHeader();
  renderTargets();
  renderCustomers();
  renderLocales();
}

// -- the preview --------------------------------------------------------------------------------

function localeName(locale) {
  try {
    return new Intl.DisplayNames(["en"], { type: "language" }).of(locale);
  } catch (error) {
    return locale;
  }
}

function showError(card, message) {
  const box = $(".error", card);
  box.hidden = !message;
  box.textContent = message || "";
  for (const part of card.children) {
    if (!part.classList.contains("card-title") && !part.classList.contains("error")) part.hidden = Boolean(message);
  }
}

function fillEmail(card, preview) {
  const email = preview.email;
  if (!email) {
    card.hidden = true;
    return;
  }
  $(".flag", card).textContent = email.sent_by_rule ? "" : "not sent by this rule";
  if (email.error) {
    showError(card, email.error);
    return;
  }
  showError(card, "");
  const sender = preview.sender.name || preview.sender.email;
  $(".avatar", card).textContent = (sender || "?").trim().charAt(0).toUpperCase();
  $(".sender", card).textContent = sender;
  $(".sender-address", card).textContent = `<${preview.sender.email}>`;
  const customer = preview.customer;
  // <bdi>: an Arabic name must not reorder the address around it.
  $(".recipient", card).replaceChildren("to ", el("bdi", { text: customer.name || customer.id }), ` <${customer.email || "no email"}>`);
  $(".subject", card).textContent = email.subject;
  $(".email-frame", card).srcdoc = email.html;
  $(".text-part pre", card).textContent = email.text;
}

function describeCount(sms) {
  const segments = `${sms.segments} segment${sms.segments === 1 ? "" : "s"}`;
  const unit = sms.encoding === "GSM-7" ? "characters" : "code units";
  return [segments, `${sms.units} ${unit}, ${sms.per_segment} a segment`];
}

function fillSms(card, preview) {
  const sms = preview.sms;
  if (!sms) {
    card.hidden = true;
    return;
  }
  $(".flag", card).textContent = sms.sent_by_rule ? "" : "not sent by this rule";
  if (sms.error) {
    showError(card, sms.error);
    return;
  }
  showError(card, "");
  const bubble = $(".sms-body", card);
  bubble.setAttribute("dir", preview.dir);
  bubble.replaceChildren(...sms.runs.map((run) => {
    if (run.kind === "gsm7") return document.createTextNode(run.text);
    const titles = {
      ucs2: "makes the whole SMS UCS-2",
      script: "this script is UCS-2 (70 characters a segment)",
      extension: "counts as two characters in GSM-7",
      replaced: "Smart Encoding sends a GSM-7 look-alike",
    };
    return el("mark", { class: `run-${run.kind}`, title: titles[run.kind], text: run.text });
  }));
  const encoding = $(".sms-encoding", card);
  encoding.textContent = sms.encoding;
  encoding.className = `chip sms-encoding ${sms.encoding === "GSM-7" ? "good" : "costly"}`;
  const [segments, units] = describeCount(sms);
  $(".sms-segments", card).textContent = segments;
  $(".sms-units", card).textContent = units;
  const list = $(".ucs2-list", card);
  list.replaceChildren();
  if (sms.avoidable) {
    const cost = sms.avoidable.gsm7_segments === sms.segments
      ? "Without them it would be GSM-7: 160 characters a segment."
      : `Without them: ${sms.avoidable.gsm7_segments} segment${sms.avoidable.gsm7_segments === 1 ? "" : "s"} instead of ${sms.segments}.`;
    list.append(el("div", { class: "muted", text: `Makes it UCS-2 (70 characters a segment). ${cost}` }));
    for (const item of sms.avoidable.characters) {
      const fix = item.replacement !== null ? ` → write ${JSON.stringify(item.replacement)}` : " → leave it out";
      list.append(el("span", { class: "chip costly", title: fix.slice(3), text: item.name + fix }));
    }
  } else if (sms.encoding !== "GSM-7") {
    list.append(el("span", { class: "muted", text: "UCS-2 because of its script: 70 characters a segment, 67 when split." }));
  }
  const parts = $(".parts ol", card);
  parts.replaceChildren(...sms.parts.map((part) => el("li", { dir: "auto", text: part })));
}

function renderColumns() {
  const columns = $("#columns");
  columns.replaceChildren();
  columns.classList.toggle("pair", state.previews.length > 1);
  for (const preview of state.previews) {
    const column = $("#column-template").content.firstElementChild.cloneNode(true);
    column.dataset.locale = preview.locale;
    $(".locale-tag", column).textContent = `${localeName(preview.locale)} · ${preview.locale}`;
    const customer = preview.customer;
    $(".as", column).replaceChildren("as ", el("bdi", { text: customer.name || customer.id }), ` · ${customer.timezone || "UTC"}`);
    fillEmail($(".email-card", column), preview);
    fillSms($(".sms-card", column), preview);
    columns.append(column);
  }
}

function renderProblems(problems) {
  const list = $("#problems");
  list.replaceChildren();
  const errors = problems.filter((p) => p.severity === "error").length;
  $("#problem-count").textContent = problems.length ? `${errors} error(s), ${problems.length - errors} warning(s)` : "all clear";
  $("#problem-count").className = `count ${errors ? "error" : problems.length ? "warning" : "ok"}`;
  if (!problems.length) {
    list.append(el("li", { class: "ok", text: "No problems in this template." }));
    return;
  }
  for (const problem of problems) {
    const item = el(
      "li",
      { class: `problem ${problem.severity}` },
      el("div", {}, el("code", { class: "where", text: problem.where }), el("span", { class: `severity ${problem.severity}`, text: problem.severity })),
      el("div", { class: "message", text: (problem.rule ? `rule "${problem.rule}": ` : "") + problem.message }),
    );
    if (problem.source_line && problem.col) {
      item.append(el("pre", { class: "source", text: `${problem.source_line}\n${" ".repeat(problem.col - 1)}^` }));
    }
    list.append(item);
  }
}

function renderRecord(preview) {
  const field = $("#record-field");
  const record = preview.record;
  field.hidden = record.choices.length < 2;
  $("#record").replaceChildren(...record.choices.map((id) => el("option", { value: id, text: id })));
  if (record.id) $("#record").value = record.id;
  const notice = $("#notice");
  notice.hidden = !record.note;
  notice.textContent = record.note || "";
}

let previewRun = 0;

async function loadPreview() {
  saveState();
  if (!state.target) {
    $("#columns").replaceChildren(el("p", { class: "muted", text: "No rules or templates yet." }));
    return;
  }
  const run = ++previewRun;
  const requests = state.locales.map((locale) => {
    const params = new URLSearchParams({ target: state.target, locale, customer: state.customer });
    if (state.record) params.set("record", state.record);
    if (state.at) params.set("at", state.at);
    return getJSON(`/api/preview?${params}`);
  });
  try {
    const previews = await Promise.all(requests);
    if (run !== previewRun) return; // a newer choice is on its way
    state.previews = previews;
    state.fingerprint = previews[0].fingerprint;
    renderColumns();
    renderProblems(previews[0].problems);
    renderRecord(previews[0]);
  } catch (error) {
    if (run !== previewRun) return;
    $("#columns").replaceChildren(el("div", { class: "notice error", text: error.message }));
  }
}

function selectTarget(id) {
  state.target = id;
  state.record = "";
  renderTargets();
  loadPreview();
}

function setLocales(locales) {
  state.locales = locales;
  renderLocales();
  loadPreview();
}

// -- customers ------------------------------------------------------------------------------------

let searchTimer = 0;

async function searchCustomers() {
  const query = $("#customer-search").value.trim();
  const results = $("#customer-results");
  if (!query) {
    results.hidden = true;
    return;
  }
  try {
    const { customers } = await getJSON(`/api/customers?${new URLSearchParams({ q: query })}`);
    results.replaceChildren();
    if (!customers.length) results.append(el("li", { class: "muted", text: "No customer matches." }));
    for (const customer of customers) {
      results.append(el("li", {}, el("button", {
        type: "button",
        text: `${customer.name || "(no name)"} · ${customer.id} · ${customer.locale}`,
        onclick: () => {
          ensureCustomerOption(customer.id, `${customer.name || customer.id} · ${customer.id} · ${customer.locale}`, customer.locale);
          chooseCustomer(customer.id, customer.locale);
          results.hidden = true;
          $("#customer-search").value = "";
        },
      })));
    }
  } catch (error) {
    results.replaceChildren(el("li", { class: "error", text: error.message }));
  }
  results.hidden = false;
}

function chooseCustomer(id, locale) {
  state.customer = id;
  state.record = "";
  $("#customer").value = id;
  const known = state.catalog.locales;
  if (state.locales.length === 1 && locale) {
    const language = locale.split("-")[0];
    const match = known.includes(locale) ? locale : known.includes(language) ? language : null;
    if (match) state.locales = [match];
  }
  renderLocales();
  loadPreview();
}

// -- time -----------------------------------------------------------------------------------------

function toLocalInput(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

function setNow() {
  const now = new Date();
  now.setSeconds(0, 0);
  $("#at").value = toLocalInput(now);
  state.at = now.toISOString();
}

// -- test sends ------------------------------------------------------------------------------------

async function loadRecent() {
  try {
    const { test_sends: sends } = await getJSON("/api/test-sends");
    $("#recent").replaceChildren(...sends.slice(0, 5).map((send) => el(
      "li",
      { class: send.outcome },
      el("span", { text: `${new Date(send.sent_at).toLocaleString()} · ${send.rule} (${send.channel}, ${send.locale}) → ${send.recipient}` }),
      el("span", { class: `chip ${send.outcome === "sent" ? "good" : "costly"}`, text: send.outcome }),
    )));
  } catch (error) {
    $("#recent").replaceChildren();
  }
}

async function sendTest(event) {
  event.preventDefault();
  const result = $("#send-result");
  const button = $("#send-button");
  button.disabled = true;
  result.className = "send-result";
  result.textContent = "Sending…";
  try {
    const sent = await getJSON("/api/send-test", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        target: state.target,
        customer: state.customer,
        record: state.record || null,
        at: state.at || null,
        locale: $("#send-locale").value,
        to: $("#send-to").value,
      }),
    });
    if (sent.outcome === "sent") {
      result.className = "send-result good";
      result.textContent = `Sent: ${sent.channel} to ${sent.to} via ${sent.provider} (${sent.provider_id}).`;
    } else {
      result.className = "send-result bad";
      result.textContent = `Not sent: ${sent.error}`;
    }
    loadRecent();
  } catch (error) {
    result.className = "send-result bad";
    result.textContent = error.message;
  } finally {
    button.disabled = false;
  }
}

// -- live reload --------------------------------------------------------------------------------------

function follow() {
  const live = $("#live");
  const text = $("#live-text");
  const events = new EventSource("/api/events");
  events.addEventListener("hello", () => {
    live.className = "live on";
    text.textContent = "Live: follows every save";
  });
  events.addEventListener("changed", async () => {
    await loadCatalog();
    await loadPreview();
    live.className = "live on flash";
    text.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    setTimeout(() => live.classList.remove("flash"), 1200);
  });
  events.onerror = () => {
    live.className = "live off";
    text.textContent = "Reconnecting…";
  };
}

// -- start ------------------------------------------------------------------------------------------------

async function start() {
  loadState();
  if (state.at) {
    $("#at").value = toLocalInput(new Date(state.at));
  } else {
    setNow();
  }
  $("#filter").addEventListener("input", renderTargets);
  $("#customer").addEventListener("change", (event) => {
    const option = event.target.selectedOptions[0];
    chooseCustomer(event.target.value, option ? option.dataset.locale : "");
  });
  document.addEventListener("click", (event) => {
    if (!event.target.closest(".customer-picker")) $("#customer-results").hidden = true;
  });
  $("#customer-search").addEventListener("keydown", (event) => {
    if (event.key === "Escape") $("#customer-results").hidden = true;
  });
  $("#customer-search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(searchCustomers, 250);
  });
  $("#record").addEventListener("change", (event) => {
    state.record = event.target.value;
    loadPreview();
  });
  $("#at").addEventListener("change", (event) => {
    if (event.target.value) state.at = new Date(event.target.value).toISOString();
    loadPreview();
  });
  $("#now").addEventListener("click", () => {
    setNow();
    loadPreview();
  });
  $("#send-form").addEventListener("submit", sendTest);
  // A pasted link, or back and forward: show the view the address names.
  window.addEventListener("hashchange", async () => {
    loadState();
    if (state.at) $("#at").value = toLocalInput(new Date(state.at));
    await loadCatalog();
    await loadPreview();
  });
  try {
    await loadCatalog();
  } catch (error) {
    $("#columns").replaceChildren(el("div", { class: "notice error", text: error.message }));
    return;
  }
  await loadPreview();
  loadRecent();
  follow();
}

start();
