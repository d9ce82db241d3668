// The whisperless page: send one file to /v1/transcriptions (or, over the API's 10 MB payload
// limit, PUT it to the presigned upload URL from /v1/uploads), follow its status, show the result.
// Plain DOM code, no build step and nothing fetched from elsewhere (the stack may be offline).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const KEY_STORAGE = "whisperless.apiKey";
  const POLL_MS = 1000;
  // API Gateway refuses bodies over 10 MB; the form's own fields and boundaries take the rest.
  const DIRECT_LIMIT = 10 * 1024 * 1024 - 64 * 1024;
  const PALETTE = ["#2563eb", "#d9480f", "#2b8a3e", "#ae3ec9", "#c92a2a", "#0c8599", "#e67700", "#5f3dc4"];

  const form = $("form"), keyInput = $("api-key"), fileInput = $("file"), drop = $("drop");
  const diarization = $("diarization"), numSpeakers = $("num-speakers"), submit = $("submit");
  const statusLine = $("status"), errorBox = $("error"), player = $("player"), progressBar = $("progress");

  let audioUrl = null;      // object URL of the chosen file, played by #player
  let downloadUrl = null;   // object URL of the raw JSON
  let shown = null;         // {id, name} of the transcription on the page, for its downloads
  let run = 0;              // bumps on every submit so a stale poll loop stops
  let words = [];           // [{start, end, el}] in time order, for the playing-word highlight

  // -- the key: the stack prints it; remembered so a reload does not ask again ---------------
  try { keyInput.value = localStorage.getItem(KEY_STORAGE) || ""; } catch (_) { /* storage disabled */ }
  keyInput.addEventListener("input", () => {
    try { localStorage.setItem(KEY_STORAGE, keyInput.value.trim()); } catch (_) { /* storage disabled */ }
  });

  // -- the file: input or drop ---------------------------------------------------------------
  function fileChosen() {
    const file = fileInput.files[0];
    // A new file: the previous transcript (and any job still being followed) is not about it.
    run++;
    clearResult();
    showError("");
    setStatus("");
    submit.disabled = false;
    if (audioUrl) URL.revokeObjectURL(audioUrl);
    audioUrl = file ? URL.createObjectURL(file) : null;
    if (audioUrl) player.src = audioUrl; else player.removeAttribute("src");
    $("file-name").textContent = file ? `${file.name} (${formatSize(file.size)})` : "";
    drop.classList.toggle("chosen", Boolean(file));
  }
  fileInput.addEventListener("change", fileChosen);
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (event) => { event.preventDefault(); drop.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    if (!event.dataTransfer.files.length) return;
    fileInput.files = event.dataTransfer.files;
    fileChosen();
  });
  // A file dropped beside the zone would otherwise replace the page with the file.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());

  // The speaker count and known speakers only mean something with diarization.
  const knownSpeakers = $("known-speakers");
  const diarizationOnly = () => {
    numSpeakers.disabled = !diarization.checked;
    knownSpeakers.disabled = !diarization.checked;
  };
  diarization.addEventListener("change", diarizationOnly);
  diarizationOnly();

  function clearResult() {
    $("result").hidden = true;
    for (const id of ["transcript", "timeline", "summary", "raw-json"]) $(id).textContent = "";
    $("timeline").hidden = true;
    words = [];
    if (downloadUrl) { URL.revokeObjectURL(downloadUrl); downloadUrl = null; }
  }

  // -- status and errors ---------------------------------------------------------------------
  function setStatus(text, busy = false) {
    statusLine.textContent = text;
    statusLine.classList.toggle("busy", busy);
  }

  function showError(message, field) {
    errorBox.textContent = "";
    if (!message) { errorBox.hidden = true; return; }
    const strong = document.createElement("strong");
    strong.textContent = "Error: ";
    errorBox.append(strong, message);
    if (field) {
      const where = document.createElement("span");
      where.className = "field-name";
      where.textContent = ` (field: ${field})`;
      errorBox.append(where);
    }
    errorBox.hidden = false;
    // Point at the form control the API complained about, when the page has one.
    const control = form.querySelector(`[name="${CSS.escape(field || "")}"]`);
    if (control && control.type !== "hidden") control.setAttribute("aria-invalid", "true");
  }

  // The API answers errors as {"error": {code, message, field}}; failed jobs carry the same object.
  function errorOf(status, body) {
    if (body && body.error && typeof body.error === "object") {
      return { message: body.error.message || body.error.code || `HTTP ${status}`, field: body.error.field };
    }
    return { message: `the server answered HTTP ${status}` };
  }

  async function call(url, init) {
    const response = await fetch(url, init);
    let body = null;
    try { body = await response.json(); } catch (_) { /* not JSON: reported by status */ }
    return { status: response.status, body };
  }

  // XMLHttpRequest, because fetch cannot report upload progress. Resolves {status, body} once the
  // answer is in; onSent runs when the last byte has left (the server is working from then on).
  function send(method, url, { headers = {}, body = null, onProgress, onSent } = {}) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open(method, url);
      for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
      xhr.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable && onProgress) onProgress(event.loaded, event.total);
      });
      xhr.upload.addEventListener("load", () => { if (onSent) onSent(); });
      xhr.addEventListener("load", () => {
        let parsed = null;
        try { parsed = xhr.responseText ? JSON.parse(xhr.responseText) : null; } catch (_) { /* not JSON */ }
        resolve({ status: xhr.status, body: parsed });
      });
      xhr.addEventListener("error", () => reject(new Error("the connection failed")));
      xhr.addEventListener("abort", () => reject(new Error("the upload was cancelled")));
      xhr.send(body);
    });
  }

  function uploading(file) {
    return (loaded, total) => {
      const share = total ? Math.floor((100 * loaded) / total) : 0;
      setStatus(`Uploading ${file.name}… ${share} % (${formatSize(loaded)} of ${formatSize(total)})`, true);
    };
  }

  // The request's parameters; empty means unset in the contract: send only what the user filled in.
  function parameters() {
    const values = {
      diarization: diarization.checked ? "true" : "false",
      numSpeakers: diarization.checked ? numSpeakers.value.trim() : "",
      knownSpeakers: diarization.checked ? knownSpeakers.value.trim() : "",
      language: $("language").value.trim(),
      task: $("task").value.trim(),
      initialPrompt: $("initial-prompt").value.trim(),
      redact: $("redact").checked ? "pii" : "",
      sentiment: $("sentiment").checked ? "true" : "",
    };
    return Object.fromEntries(Object.entries(values).filter(([, value]) => value));
  }

  // Up to the API's limit: one multipart POST, which waits for the result a while.
  function postDirectly(file, headers) {
    const data = new FormData();
    data.append("file", file, file.name);
    for (const [name, value] of Object.entries(parameters())) data.append(name, value);
    return send("POST", "/v1/transcriptions", {
      headers, body: data, onProgress: uploading(file),
      onSent: () => setStatus(`Transcribing ${file.name}…`, true),
    });
  }

  // Over it: a presigned upload straight to the bucket, then the job's status to follow.
  async function uploadPresigned(file, headers) {
    setStatus(`Preparing the upload of ${file.name}…`, true);
    const asked = await call("/v1/uploads", {
      method: "POST",
      headers: { ...headers, "Content-Type": "application/json" },
      body: JSON.stringify({ filename: file.name, ...parameters() }),
    });
    if (asked.status !== 201 || !asked.body || !asked.body.uploadUrl) return asked;
    const ticket = asked.body;
    const put = await send(ticket.method || "PUT", ticket.uploadUrl, {
      headers: ticket.headers || {}, body: file, onProgress: uploading(file),
      onSent: () => setStatus(`Transcribing ${file.name}…`, true),
    });
    if (put.status < 200 || put.status >= 300) {
      return { status: put.status, body: { error: { message: `the upload to storage failed (HTTP ${put.status})` } } };
    }
    return { status: 202, body: { id: ticket.id, status: "queued", statusUrl: ticket.statusUrl } };
  }

  function pendingText(body, file, elapsed) {
    const what = { queued: "Queued", awaiting_upload: "Waiting for the upload", retrying: "Retrying" }[body.status]
      || { merging: "Joining the chunks of" }[body.stage] || "Transcribing";
    const chunks = body.chunks ? ` (${body.chunks.done} of ${body.chunks.total} chunks)` : "";
    const why = body.lastError && body.lastError.message ? ` (last error: ${body.lastError.message})` : "";
    return `${what} ${file.name}${chunks}… ${elapsed()}${why}`;
  }

  // The job's progress (0-1) while it runs, from GET /v1/transcriptions/{id}; hidden otherwise.
  function showProgress(value) {
    progressBar.hidden = typeof value !== "number";
    if (!progressBar.hidden) {
      progressBar.value = value;
      progressBar.textContent = `${Math.round(value * 100)} %`;
    }
  }

  // -- submit, then poll ---------------------------------------------------------------------
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const mine = ++run;
    showError("");
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    const key = keyInput.value.trim();
    const file = fileInput.files[0];
    if (!key) { showError("enter the API key that whisperless serve printed", "Authorization"); keyInput.focus(); return; }
    if (!file) { showError("choose an audio file first", "file"); fileInput.focus(); return; }

    clearResult();
    const started = performance.now();
    const elapsed = () => `${((performance.now() - started) / 1000).toFixed(0)} s`;
    const headers = { Authorization: `Bearer ${key}` };
    submit.disabled = true;
    setStatus(`Uploading ${file.name}…`, true);
    try {
      let { status, body } = file.size > DIRECT_LIMIT
        ? await uploadPresigned(file, headers)
        : await postDirectly(file, headers);
      while (mine === run && status < 300 && body && isPending(body)) {
        setStatus(pendingText(body, file, elapsed), true);
        showProgress(body.progress);
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
        if (mine !== run) return;
        const url = new URL(body.statusUrl || `/v1/transcriptions/${body.id}`, location.href);
        ({ status, body } = await call(url, { headers }));
      }
      if (mine !== run) return;
      showProgress(undefined);
      if (status >= 400 || !body || body.status === "failed") {
        const { message, field } = errorOf(status, body);
        setStatus(body && body.status === "failed" ? "Failed." : `Refused (HTTP ${status}).`);
        showError(message, field);
        if (body && body.status === "failed") render(body, file);
        return;
      }
      setStatus(`Done in ${((performance.now() - started) / 1000).toFixed(1)} s.`);
      render(body, file);
    } catch (err) {
      if (mine !== run) return;
      setStatus("Could not reach the server.");
      showError(`${err.message || err} (is whisperless serve still running?)`);
    } finally {
      if (mine === run) submit.disabled = false;
    }
  });

  // -- speakers by name: enrol a voice, list and forget the enrolled ones ----------------------
  const enrolStatus = $("enrol-status"), voiceList = $("voice-list");

  async function listVoices() {
    const key = keyInput.value.trim();
    voiceList.textContent = "";
    if (!key) return;
    const { status, body } = await call("/v1/speakers", { headers: { Authorization: `Bearer ${key}` } });
    if (status !== 200 || !body) return;
    for (const voice of body.speakers || []) {
      const item = document.createElement("li");
      item.textContent = `${voice.name} (${voice.seconds} s) `;
      const forget = document.createElement("button");
      forget.type = "button";
      forget.className = "forget";
      forget.textContent = "Forget";
      forget.addEventListener("click", async () => {
        await call(`/v1/speakers/${encodeURIComponent(voice.name)}`, {
          method: "DELETE", headers: { Authorization: `Bearer ${keyInput.value.trim()}` },
        });
        listVoices();
      });
      item.append(forget);
      voiceList.append(item);
    }
  }
  keyInput.addEventListener("change", listVoices);
  listVoices().catch(() => { /* the server may be gone: the list stays empty */ });

  $("enrol-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = keyInput.value.trim(), file = $("voice-file").files[0], name = $("voice-name").value.trim();
    const say = (text) => { enrolStatus.textContent = text; };
    if (!key) { say("Enter the API key first."); return; }
    const data = new FormData();
    data.append("name", name);
    if (file) data.append("file", file, file.name);
    say(`Enrolling ${name || "the voice"}…`);
    $("enrol").disabled = true;
    try {
      const { status, body } = await call("/v1/speakers", {
        method: "POST", headers: { Authorization: `Bearer ${key}` }, body: data,
      });
      let outcome;
      if (status === 201) outcome = `Enrolled ${body.name} (${body.seconds} s of speech).`;
      else if (status === 202) outcome = `${body.name} is still being enrolled.`;
      else {
        const { message, field } = errorOf(status, body);
        outcome = `Refused: ${message}${field ? ` (field: ${field})` : ""}`;
      }
      await listVoices();  // the list first, so "Enrolled" never shows above a list without the voice
      say(outcome);
    } catch (err) {
      say(`Could not reach the server: ${err.message || err}`);
    } finally {
      $("enrol").disabled = false;
    }
  });

  function isPending(body) {
    return !("segments" in body) && !("error" in body) && body.status !== "completed" && body.status !== "failed";
  }

  // -- the result ----------------------------------------------------------------------------
  function render(doc, file) {
    const segments = Array.isArray(doc.segments) ? doc.segments : [];
    const colours = speakerColours(doc);
    const transcript = $("transcript");
    transcript.textContent = "";
    words = [];

    for (const segment of segments) {
      const block = document.createElement("article");
      block.className = "segment";
      block.dataset.start = segment.start;
      const head = document.createElement("div");
      head.className = "segment-head";
      if (segment.speaker) {
        const label = document.createElement("span");
        label.className = "speaker";
        label.textContent = segment.speaker;
        label.style.setProperty("--speaker", colours.get(segment.speaker));
        block.style.setProperty("--speaker", colours.get(segment.speaker));
        head.append(label);
      }
      // The timestamp is a real button: the keyboard way to play a segment.
      const time = document.createElement("button");
      time.type = "button";
      time.className = "time seek";
      time.dataset.start = segment.start;
      time.textContent = `${clock(segment.start)} – ${clock(segment.end)}`;
      time.setAttribute("aria-label", `Play from ${clock(segment.start)}`);
      head.append(time);

      const text = document.createElement("p");
      text.className = "text";
      const segWords = Array.isArray(segment.words) ? segment.words : [];
      if (!segWords.length) text.textContent = (segment.text || "").trim();
      segWords.forEach((word, i) => {
        const raw = String(word.word ?? "");
        if (i > 0 && /^\s/.test(raw)) text.append(" ");
        const span = document.createElement("span");
        span.className = "word";
        span.textContent = raw.trim();
        span.dataset.start = word.start;
        span.dataset.end = word.end;
        const p = Number(word.probability);
        span.title = `${seconds(word.start)} – ${seconds(word.end)}` +
          (Number.isFinite(p) ? ` · probability ${p.toFixed(2)}` : "") +
          (word.speaker ? ` · ${word.speaker}` : "");
        if (Number.isFinite(p) && p < 0.5) span.classList.add("unsure");
        if (word.speaker && word.speaker !== segment.speaker) {
          span.classList.add("other-speaker");
          span.style.setProperty("--speaker", colours.get(word.speaker));
        }
        text.append(span);
        words.push({ start: Number(word.start), end: Number(word.end), el: span });
      });
      block.append(head, text);
      transcript.append(block);
    }
    if (!segments.length && doc.status === "completed") {
      transcript.innerHTML = '<p class="empty">No speech was found.</p>';
    }

    renderTimeline(doc, colours);
    $("summary").textContent = summary(doc, colours);

    const json = JSON.stringify(doc, null, 2);
    $("raw-json").textContent = json;
    if (downloadUrl) URL.revokeObjectURL(downloadUrl);
    downloadUrl = URL.createObjectURL(new Blob([json], { type: "application/json" }));
    const link = $("download");
    link.href = downloadUrl;
    link.download = `${file.name}.json`;  // the name the contract gives results next to the audio
    shown = doc.status === "completed" && doc.id ? { id: doc.id, name: file.name } : null;
    $("downloads").hidden = !shown;

    $("result").hidden = false;
  }

  function speakerColours(doc) {
    const colours = new Map();
    const add = (speaker) => {
      if (speaker && !colours.has(speaker)) colours.set(speaker, PALETTE[colours.size % PALETTE.length]);
    };
    for (const turn of doc.diarization || []) add(turn.speaker);
    for (const segment of doc.segments || []) {
      add(segment.speaker);
      for (const word of segment.words || []) add(word.speaker);
    }
    return colours;
  }

  function renderTimeline(doc, colours) {
    const timeline = $("timeline");
    timeline.textContent = "";
    const turns = Array.isArray(doc.diarization) ? doc.diarization : [];
    const duration = Number(doc.duration) || Math.max(0, ...turns.map((t) => t.stopTime),
      ...(doc.segments || []).map((s) => s.end));
    timeline.hidden = !turns.length || !(duration > 0);
    // One lane per speaker, so overlapping speech shows as overlap rather than a blend.
    const lanes = [...new Set(turns.map((t) => t.speaker))];
    timeline.style.setProperty("--lanes", lanes.length || 1);
    for (const turn of turns) {
      const bar = document.createElement("span");
      bar.className = "turn seek";
      bar.dataset.start = turn.startTime;
      bar.style.setProperty("--lane", lanes.indexOf(turn.speaker));
      bar.style.left = `${(100 * turn.startTime) / duration}%`;
      bar.style.width = `${Math.max(0.3, (100 * (turn.stopTime - turn.startTime)) / duration)}%`;
      bar.style.background = colours.get(turn.speaker);
      bar.title = `${turn.speaker}: ${seconds(turn.startTime)} – ${seconds(turn.stopTime)}`;
      timeline.append(bar);
    }
  }

  function summary(doc, colours) {
    const parts = [];
    if (doc.language) parts.push(`language ${doc.language}`);
    if (Number(doc.duration)) parts.push(`${clock(doc.duration)} of audio`);
    if (colours.size) parts.push(`${colours.size} speaker${colours.size === 1 ? "" : "s"}`);
    // Speakers by name: who was recognised, and how alike the voices were.
    const named = (doc.speakers || []).filter((row) => row.name);
    if (named.length) parts.push(`recognised: ${named.map((row) => `${row.name} (${row.similarity})`).join(", ")}`);
    if (doc.model) parts.push(`model ${typeof doc.model === "string" ? doc.model : JSON.stringify(doc.model)}`);
    if (Array.isArray(doc.redactions)) {
      parts.push(`${doc.redactions.length} redaction${doc.redactions.length === 1 ? "" : "s"}`);
    }
    if (doc.sentiment && doc.sentiment.label) parts.push(`sentiment ${doc.sentiment.label}`);
    return parts.join(" · ");
  }

  // -- downloads: the API renders srt, vtt, txt and json (GET /v1/transcriptions/{id}?format=) --------
  // A plain link cannot send the API key, so the page fetches the rendering and saves it.
  for (const button of document.querySelectorAll("button.download")) {
    button.addEventListener("click", async () => {
      if (!shown) return;
      const format = button.dataset.format;
      const url = `/v1/transcriptions/${encodeURIComponent(shown.id)}?format=${format}`;
      try {
        const response = await fetch(url, { headers: { Authorization: `Bearer ${keyInput.value.trim()}` } });
        if (!response.ok) {
          let body = null;
          try { body = await response.json(); } catch (_) { /* not JSON */ }
          const { message, field } = errorOf(response.status, body);
          showError(message, field);
          return;
        }
        const blob = await response.blob();
        const save = document.createElement("a");
        save.href = URL.createObjectURL(blob);
        save.download = `${shown.name}.${format}`;  // the names the renderings get next to the audio
        document.body.append(save);
        save.click();
        save.remove();
        setTimeout(() => URL.revokeObjectURL(save.href), 10000);
      } catch (err) {
        showError(`${err.message || err} (is whisperless serve still running?)`);
      }
    });
  }

  // -- playback: click a word (or a timestamp, or a turn) to play from there ------------------
  document.addEventListener("click", (event) => {
    const target = event.target.closest(".word, .seek");
    if (!target || !audioUrl) return;
    const start = Number(target.dataset.start);
    if (!Number.isFinite(start)) return;
    player.currentTime = start;
    // Autoplay rules or a codec the browser lacks may refuse; the position is set either way.
    player.play().catch(() => {});
  });

  // Highlight the word being played.
  let playing = null;
  player.addEventListener("timeupdate", () => {
    const t = player.currentTime;
    let lo = 0, hi = words.length - 1, found = null;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (words[mid].start <= t) { found = words[mid]; lo = mid + 1; } else hi = mid - 1;
    }
    const el = found && t <= found.end + 0.25 ? found.el : null;
    if (el === playing) return;
    if (playing) playing.classList.remove("playing");
    if (el) el.classList.add("playing");
    playing = el;
  });

  // -- formatting ----------------------------------------------------------------------------
  function clock(value) {
    const t = Math.max(0, Number(value) || 0);
    const m = Math.floor(t / 60), s = t - 60 * m;
    return `${m}:${s.toFixed(1).padStart(4, "0")}`;
  }
  function seconds(value) { return `${(Number(value) || 0).toFixed(2)} s`; }
  function capitalize(text) { return text.charAt(0).toUpperCase() + text.slice(1).replace(/_/g, " "); }
  function formatSize(bytes) {
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
    return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  }
})();
