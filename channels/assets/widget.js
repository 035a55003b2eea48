/*
 * Switchboard web chat widget.
 *
 * Embed with one tag:
 *   <script src="https://support.example.com/widget.js" data-title="Support" async></script>
 *
 * Plain JavaScript, no dependencies, no build step. The UI lives in a Shadow DOM so the host
 * page's CSS cannot reach it. Message text is only ever inserted with textContent.
 */
(function () {
  'use strict';

  // document.currentScript only exists while this file first runs, so capture it now.
  const script = document.currentScript ||
    document.querySelector('script[data-server]') ||
    document.querySelector('script[src*="widget.js"]');

  if (window.__switchboardWidgetLoaded) return; // embedded twice: keep the first
  window.__switchboardWidgetLoaded = true;

  const given = window.SwitchboardWidget && typeof window.SwitchboardWidget === 'object'
    ? window.SwitchboardWidget : {};
  const attrs = (script && script.dataset) || {};
  const server = resolveServer();

  const WELCOME_KEY = 'welcome';
  const HISTORY_PAGE = 500;           // the server's page size; a full page means "ask again"
  const PING_EVERY = 25000;
  const PONG_WITHIN = 20000;          // replies can queue behind a slow send, so be generous
  const TYPING_MAX = 15000;
  const WS_RETRY_IN_FALLBACK = 60000;
  const SENDERS = ['customer', 'bot', 'agent', 'system'];

  // ---- configuration ----------------------------------------------------------------------

  /** Explicit settings win; otherwise the server is wherever this script was loaded from. */
  function resolveServer() {
    let base = given.server || attrs.server;
    if (!base && script && script.src) base = new URL('.', script.src).href;
    if (!base) base = location.origin;
    return new URL(base, location.href).href.replace(/\/+$/, '');
  }

  const DEFAULT_LOOK = {
    title: 'Support', primaryColor: '#2563eb', textColor: '#ffffff',
    position: 'right', welcomeMessage: '',
  };
  // Page settings: data attributes, overridden by window.SwitchboardWidget.
  const pageLook = merge({}, {
    title: attrs.title, primaryColor: attrs.primaryColor, textColor: attrs.textColor,
    position: attrs.position, welcomeMessage: attrs.welcome != null ? attrs.welcome : attrs.welcomeMessage,
  }, {
    title: given.title, primaryColor: given.primaryColor, textColor: given.textColor,
    position: given.position, welcomeMessage: given.welcomeMessage,
  });
  let serverLook = {};
  let look = computeLook();

  /** Copies the defined values of each source onto target, later sources winning. */
  function merge(target, ...sources) {
    for (const source of sources) {
      for (const [key, value] of Object.entries(source)) if (value != null) target[key] = value;
    }
    return target;
  }

  function computeLook() {
    const result = merge({}, DEFAULT_LOOK, serverLook, pageLook);
    result.position = result.position === 'left' ? 'left' : 'right';
    result.primaryColor = validColor(result.primaryColor, DEFAULT_LOOK.primaryColor);
    result.textColor = validColor(result.textColor, DEFAULT_LOOK.textColor);
    result.title = String(result.title || DEFAULT_LOOK.title);
    result.welcomeMessage = String(result.welcomeMessage || '');
    return result;
  }

  function validColor(value, fallback) {
    const ok = window.CSS && CSS.supports ? CSS.supports('color', value) : /^#[0-9a-f]{3,8}$/i.test(value);
    return ok ? value : fallback;
  }

  async function loadServerConfig() {
    try {
      const res = await fetch(server + '/webchat/config');
      if (!res.ok) return;
      const data = await res.json();
      const l = data.look || {};
      serverLook = {
        title: l.title, primaryColor: l.primary_color, textColor: l.text_color,
        position: l.position, welcomeMessage: l.welcome_message,
      };
      if (data.max_message_chars > 0) state.maxChars = data.max_message_chars;
      state.prechatFields = Array.isArray(data.prechat_fields) ? data.prechat_fields.filter((f) => f === 'name' || f === 'email') : [];
      if (ui.prechat) updatePrechat();
      // Outside business hours the header says when the team is back.
      state.teamBack = data.hours && !data.hours.open && data.hours.next_open ? String(data.hours.next_open) : null;
      // Once the team is back the note goes (a page left open over the weekend).
      clearTimeout(state.teamBackTimer);
      const backIn = state.teamBack ? Date.parse(data.hours.next_open_at) - Date.now() : NaN;
      if (backIn > 0 && backIn < 2147483647) state.teamBackTimer = setTimeout(() => { state.teamBack = null; updateStatus(); }, backIn);
      if (ui.status) updateStatus();
      look = computeLook();
      applyLook();
    } catch (_) { /* the built-in look is fine */ }
  }

  // ---- storage: localStorage, or memory when it is unavailable (private modes, sandboxes) ----

  const memory = {};
  const storageKey = (name) => 'switchboard:' + server + ':' + name;

  function load(name) {
    if (name in memory) return memory[name];
    try { return localStorage.getItem(storageKey(name)); } catch (_) { return null; }
  }

  function save(name, value) {
    memory[name] = value;
    try {
      if (value == null) localStorage.removeItem(storageKey(name));
      else localStorage.setItem(storageKey(name), value);
    } catch (_) { /* memory copy still works for this page */ }
  }

  const validClientId = (id) => typeof id === 'string' && /^[A-Za-z0-9_-]{1,64}$/.test(id);

  function readPending() {
    try {
      const list = JSON.parse(load('pending') || '[]');
      if (!Array.isArray(list)) return [];
      return list
        .filter((p) => p && validClientId(p.client_id) && typeof p.text === 'string')
        .map((p) => ({ client_id: p.client_id, text: p.text, error: null }));
    } catch (_) { return []; }
  }

  function writePending() {
    const pending = state.local.filter((m) => !m.error).map((m) => ({ client_id: m.client_id, text: m.text }));
    save('pending', JSON.stringify(pending));
  }

  // ---- who the visitor is ----------------------------------------------------------------

  /** The embedding site's signed-in user, `{id, name, email, hash}` (hash: HMAC-SHA256 of id
   *  under the shared identity secret, computed on the site's server); null when anonymous. */
  const siteUser = given.user && typeof given.user === 'object' && given.user.id != null && given.user.hash
    ? { id: String(given.user.id), name: given.user.name == null ? undefined : String(given.user.name),
      email: given.user.email == null ? undefined : String(given.user.email), hash: String(given.user.hash) }
    : null;
  // Another user (or none) on this browser: start over, so nobody sees the previous user's chat.
  if ((load('identity') || '') !== (siteUser ? siteUser.id : '')) {
    save('token', null);
    save('pending', null);
    save('profiled', null);
    save('identity', siteUser ? siteUser.id : null);
  }

  // ---- state ------------------------------------------------------------------------------

  const state = {
    token: load('token'),
    stored: new Map(),    // id → Message the server has stored
    local: readPending(), // customer messages not stored yet, in send order: {client_id, text, error}
    uploads: [],          // files on their way: {client_id, name, progress, error}; never kept across pages
    maxSeq: 0,            // highest seq seen
    cursor: 0,            // highest seq up to which nothing is missing: the `after` for catch-ups
    conversation: null,
    connection: 'connecting', // connecting | online | offline
    open: load('open') === '1',
    maxChars: 0,
    prechatFields: [],    // what the pre-chat form asks: "name", "email"
  };

  let socket = null;        // the current WebSocket, if any
  let typingSentAt = 0;     // when agents were last told the customer is typing
  let socketReady = false;  // `ready` arrived on it
  let everReady = false;    // a socket has worked on this page, so WebSockets are not blocked
  let failedOpens = 0;
  let attempt = 0;          // reconnect backoff step
  let mode = 'ws';          // 'ws' or 'http' (fallback)
  let fallbackGen = 0;      // bumps to stop the fallback loops
  let fallbackAbort = null;
  let connecting = false;
  let lastFrameAt = 0;
  const inflight = new Set(); // client_ids sent on the current socket and not answered yet
  const timers = { reconnect: 0, ping: 0, liveness: 0, typing: 0, retry: 0, wsRetry: 0 };

  // ---- helpers ----------------------------------------------------------------------------

  function newClientId() {
    const c = window.crypto;
    if (c && typeof c.randomUUID === 'function') return c.randomUUID();
    const bytes = new Uint8Array(16);
    if (c && c.getRandomValues) c.getRandomValues(bytes);
    else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  /** Exponential backoff from 0.5 s to 30 s, jittered so many widgets don't retry in step. */
  function backoffDelay(step) {
    const base = Math.min(30000, 500 * Math.pow(2, step));
    return base / 2 + Math.random() * base / 2;
  }

  /** "try again in 1234 ms" → 1234; anything else → 2 s. */
  function retryDelay(message) {
    const match = /(\d+)\s*ms/.exec(message || '');
    return match ? Math.max(100, Number(match[1])) : 2000;
  }

  // Sleeps that the 'online' event can cut short.
  const sleepers = new Set();
  function sleep(ms) {
    return new Promise((resolve) => {
      const done = () => { clearTimeout(timer); sleepers.delete(done); resolve(); };
      const timer = setTimeout(done, ms);
      sleepers.add(done);
    });
  }
  const wakeSleepers = () => [...sleepers].forEach((done) => done());

  function formatTime(iso) {
    const d = new Date(iso);
    if (isNaN(d.getTime())) return '';
    return String(d.getHours()).padStart(2, '0') + ':' + String(d.getMinutes()).padStart(2, '0');
  }

  /** "14:05" today, else "3 Dec 14:05". */
  function formatDay(iso) {
    const d = new Date(iso);
    if (isNaN(d.getTime())) return '';
    const today = new Date().toDateString() === d.toDateString();
    return (today ? '' : d.toLocaleDateString(undefined, { day: 'numeric', month: 'short' }) + ' ') + formatTime(iso);
  }

  // ---- identity and HTTP --------------------------------------------------------------------

  let sessionPromise = null;

  /** The visitor token, creating a session once even if many callers ask at the same time. */
  function ensureSession() {
    if (state.token) return Promise.resolve(state.token);
    if (!sessionPromise) {
      sessionPromise = createSession().finally(() => { sessionPromise = null; });
    }
    return sessionPromise;
  }

  async function createSession() {
    const init = { method: 'POST' };
    if (siteUser) {
      init.headers = { 'Content-Type': 'application/json' };
      init.body = JSON.stringify({ user: siteUser });
    }
    const res = await fetch(server + '/webchat/session', init);
    const data = await res.json().catch(() => null);
    if (!res.ok || !data || !data.token) throw new Error('session failed: ' + res.status);
    state.token = data.token;
    save('token', data.token);
    return data.token;
  }

  /** The server no longer accepts oldToken: become a new visitor (pending messages go along). */
  function renewSession(oldToken) {
    if (state.token === oldToken) {
      state.token = null;
      save('token', null);
      // The old visitor's conversation is out of reach now, and seqs start over.
      state.stored.clear();
      state.maxSeq = 0;
      state.cursor = 0;
      state.conversation = null;
      render();
      updateStatus();
    }
    return ensureSession();
  }

  /** An authorised request; a 401 renews the session and retries once. Throws on network errors. */
  async function request(method, path, body, signal) {
    for (let tries = 0; ; tries++) {
      const token = await ensureSession();
      const init = { method, headers: { Authorization: 'Bearer ' + token }, signal };
      if (body !== undefined) {
        init.headers['Content-Type'] = 'application/json';
        init.body = JSON.stringify(body);
      }
      const res = await fetch(server + path, init);
      const data = await res.json().catch(() => null);
      if (res.status === 401 && tries === 0) { await renewSession(token); continue; }
      return { status: res.status, ok: res.ok, data };
    }
  }

  // ---- messages -----------------------------------------------------------------------------

  /** Adds server messages, deduplicated by id; a stored customer message settles its pending copy.
   *  An ack's message does not advance the cursor: replies stored before it may not have
   *  reached us yet (over HTTP they only come with the next poll). */
  function ingest(messages, live, fromAck) {
    for (const m of messages) {
      if (!m || typeof m.id !== 'string' || typeof m.seq !== 'number') continue;
      if (m.seq > state.maxSeq) state.maxSeq = m.seq;
      if (!fromAck && m.seq > state.cursor) state.cursor = m.seq;
      if (m.client_id) dropLocal(m.client_id);
      if (state.stored.has(m.id)) continue;
      state.stored.set(m.id, m);
      if (m.sender !== 'customer') {
        setTyping(false);
        if (live && !state.open) setUnread(true);
        // Handoffs arrive as system/agent messages; refresh who is answering.
        if (live && m.sender !== 'bot' && socketReady) requestHistory();
      }
    }
    render();
  }

  function dropLocal(clientId) {
    inflight.delete(clientId);
    const index = state.local.findIndex((m) => m.client_id === clientId);
    if (index < 0) return;
    state.local.splice(index, 1);
    writePending();
  }

  function failLocal(entry, message) {
    inflight.delete(entry.client_id);
    entry.error = message || t('The message could not be sent.');
    writePending(); // failed messages are not retried, so they leave the stored queue
    render();
  }

  function setConversation(conversation) {
    if (conversation === undefined) return;
    // A change of hands or status says nothing of what was seen: that mark stays.
    const seen = state.conversation && conversation && state.conversation.id === conversation.id ? state.conversation.seen_up_to : undefined;
    state.conversation = conversation;
    if (conversation && conversation.seen_up_to === undefined && seen !== undefined) conversation.seen_up_to = seen;
    updateStatus();
    if (ui.messages) render();
  }

  /** An agent saw the customer's messages up to `seq`. */
  function markSeen(seq) {
    if (!state.conversation || typeof seq !== 'number') return;
    state.conversation.seen_up_to = Math.max(seq, state.conversation.seen_up_to || 0);
    if (ui.messages) render();
  }

  /** Queues a customer message; it stays pending (and stored locally) until the server acks it. */
  function send(text) {
    text = String(text == null ? '' : text).trim();
    if (!text) return null;
    typingSentAt = 0; // the next message's first keystroke says so again
    const entry = { client_id: newClientId(), text, error: null };
    const chars = Array.from(text).length;
    if (state.maxChars && chars > state.maxChars) {
      entry.error = t('The message has {chars} characters; the limit is {limit}. Shorten it or split it.', { chars, limit: state.maxChars });
    }
    state.local.push(entry);
    writePending();
    render(true);
    if (!entry.error) flushPending();
    return entry.client_id;
  }

  /** Sends every pending message not already on its way, oldest first, reusing its client_id. */
  function flushPending() {
    if (mode === 'http') { httpFlush(); return; }
    if (!socketReady) return;
    for (const m of state.local) {
      if (m.error || inflight.has(m.client_id)) continue;
      if (sendFrame({ type: 'send', client_id: m.client_id, text: m.text, language: pageLanguage() })) inflight.add(m.client_id);
    }
  }

  function retryLater(delay, withHistory) {
    clearTimeout(timers.retry);
    timers.retry = setTimeout(() => {
      if (withHistory && socketReady) requestHistory();
      flushPending();
    }, delay);
  }

  // ---- WebSocket ----------------------------------------------------------------------------

  function wsUrl(token) {
    const url = new URL(server + '/webchat/ws');
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    url.searchParams.set('token', token);
    return url.href;
  }

  // The widget's own words in the page's language, by their English (the bot's and the team's
  // come from the server).
  const TRANSLATIONS = {
    de: {
      'Close chat': 'Chat schließen',
      'Open chat': 'Chat öffnen',
      'Your requests': 'Ihre Anfragen',
      'Messages': 'Nachrichten',
      'Conversation': 'Unterhaltung',
      'Type a message…': 'Nachricht schreiben…',
      'Message': 'Nachricht',
      'Send': 'Senden',
      'Attach a file': 'Datei anhängen',
      'Attach a photo or PDF': 'Foto oder PDF anhängen',
      'Your name': 'Ihr Name',
      'Your email (so we can reply if you leave)': 'Ihre E-Mail (damit wir antworten können, falls Sie gehen)',
      'About you': 'Über Sie',
      'Skip': 'Überspringen',
      'Save': 'Speichern',
      'Online': 'Online',
      'Connecting…': 'Verbinde…',
      'Offline — messages will be sent when the connection returns': 'Offline – Nachrichten werden gesendet, sobald die Verbindung zurück ist',
      'Waiting for the team': 'Wartet auf das Team',
      'You': 'Sie',
      'Agent': 'Mitarbeiter',
      'Rate the help you got': 'Bewerten Sie die Hilfe',
      'No requests yet.': 'Noch keine Anfragen.',
      'Loading your requests…': 'Ihre Anfragen werden geladen…',
      '{name} is typing…': '{name} schreibt…',
      'The message could not be sent.': 'Die Nachricht konnte nicht gesendet werden.',
      'The message could not be sent ({status}).': 'Die Nachricht konnte nicht gesendet werden ({status}).',
      'The message has {chars} characters; the limit is {limit}. Shorten it or split it.': 'Die Nachricht hat {chars} Zeichen; erlaubt sind {limit}. Kürzen oder teilen Sie sie.',
      'The file could not be sent: no connection. Try again.': 'Die Datei konnte nicht gesendet werden: keine Verbindung. Versuchen Sie es erneut.',
      'The file could not be sent ({status}).': 'Die Datei konnte nicht gesendet werden ({status}).',
      'The file could not be sent: the connection failed. Try again.': 'Die Datei konnte nicht gesendet werden: die Verbindung ist abgebrochen. Versuchen Sie es erneut.',
      'Download {name}': '{name} herunterladen',
      'The file could not be downloaded. Try again.': 'Die Datei konnte nicht heruntergeladen werden. Versuchen Sie es erneut.',
      'That could not be saved; try again.': 'Das konnte nicht gespeichert werden; versuchen Sie es erneut.',
      'No connection; try again.': 'Keine Verbindung; versuchen Sie es erneut.',
      'Your requests could not be loaded; try again in a moment.': 'Ihre Anfragen konnten nicht geladen werden; versuchen Sie es gleich noch einmal.',
    },
    es: {
      'Close chat': 'Cerrar chat',
      'Open chat': 'Abrir chat',
      'Your requests': 'Tus solicitudes',
      'Messages': 'Mensajes',
      'Conversation': 'Conversación',
      'Type a message…': 'Escribe un mensaje…',
      'Message': 'Mensaje',
      'Send': 'Enviar',
      'Attach a file': 'Adjuntar un archivo',
      'Attach a photo or PDF': 'Adjunta una foto o un PDF',
      'Your name': 'Tu nombre',
      'Your email (so we can reply if you leave)': 'Tu correo (para responderte si te vas)',
      'About you': 'Sobre ti',
      'Skip': 'Omitir',
      'Save': 'Guardar',
      'Online': 'En línea',
      'Connecting…': 'Conectando…',
      'Offline — messages will be sent when the connection returns': 'Sin conexión: los mensajes se enviarán cuando vuelva la conexión',
      'Waiting for the team': 'Esperando al equipo',
      'You': 'Tú',
      'Agent': 'Agente',
      'Rate the help you got': 'Valora la ayuda recibida',
      'No requests yet.': 'Aún no hay solicitudes.',
      'Loading your requests…': 'Cargando tus solicitudes…',
      '{name} is typing…': '{name} está escribiendo…',
      'The message could not be sent.': 'No se pudo enviar el mensaje.',
      'The message could not be sent ({status}).': 'No se pudo enviar el mensaje ({status}).',
      'The message has {chars} characters; the limit is {limit}. Shorten it or split it.': 'El mensaje tiene {chars} caracteres; el límite es {limit}. Acórtalo o divídelo.',
      'The file could not be sent: no connection. Try again.': 'No se pudo enviar el archivo: sin conexión. Inténtalo de nuevo.',
      'The file could not be sent ({status}).': 'No se pudo enviar el archivo ({status}).',
      'The file could not be sent: the connection failed. Try again.': 'No se pudo enviar el archivo: falló la conexión. Inténtalo de nuevo.',
      'Download {name}': 'Descargar {name}',
      'The file could not be downloaded. Try again.': 'No se pudo descargar el archivo. Inténtalo de nuevo.',
      'That could not be saved; try again.': 'No se pudo guardar; inténtalo de nuevo.',
      'No connection; try again.': 'Sin conexión; inténtalo de nuevo.',
      'Your requests could not be loaded; try again in a moment.': 'No se pudieron cargar tus solicitudes; inténtalo de nuevo en un momento.',
    },
    fr: {
      'Close chat': 'Fermer le chat',
      'Open chat': 'Ouvrir le chat',
      'Your requests': 'Vos demandes',
      'Messages': 'Messages',
      'Conversation': 'Conversation',
      'Type a message…': 'Écrivez un message…',
      'Message': 'Message',
      'Send': 'Envoyer',
      'Attach a file': 'Joindre un fichier',
      'Attach a photo or PDF': 'Joindre une photo ou un PDF',
      'Your name': 'Votre nom',
      'Your email (so we can reply if you leave)': 'Votre e-mail (pour vous répondre si vous partez)',
      'About you': 'À propos de vous',
      'Skip': 'Passer',
      'Save': 'Enregistrer',
      'Online': 'En ligne',
      'Connecting…': 'Connexion…',
      'Offline — messages will be sent when the connection returns': 'Hors ligne — les messages partiront au retour de la connexion',
      'Waiting for the team': 'En attente de l\'équipe',
      'You': 'Vous',
      'Agent': 'Conseiller',
      'Rate the help you got': 'Notez l\'aide reçue',
      'No requests yet.': 'Aucune demande pour l\'instant.',
      'Loading your requests…': 'Chargement de vos demandes…',
      '{name} is typing…': '{name} écrit…',
      'The message could not be sent.': 'Le message n’a pas pu être envoyé.',
      'The message could not be sent ({status}).': 'Le message n’a pas pu être envoyé ({status}).',
      'The message has {chars} characters; the limit is {limit}. Shorten it or split it.': 'Le message compte {chars} caractères ; la limite est de {limit}. Raccourcissez-le ou divisez-le.',
      'The file could not be sent: no connection. Try again.': 'Le fichier n’a pas pu être envoyé : pas de connexion. Réessayez.',
      'The file could not be sent ({status}).': 'Le fichier n’a pas pu être envoyé ({status}).',
      'The file could not be sent: the connection failed. Try again.': 'Le fichier n’a pas pu être envoyé : la connexion a échoué. Réessayez.',
      'Download {name}': 'Télécharger {name}',
      'The file could not be downloaded. Try again.': 'Le fichier n’a pas pu être téléchargé. Réessayez.',
      'That could not be saved; try again.': 'L’enregistrement a échoué ; réessayez.',
      'No connection; try again.': 'Pas de connexion ; réessayez.',
      'Your requests could not be loaded; try again in a moment.': 'Vos demandes n’ont pas pu être chargées ; réessayez dans un instant.',
    },
    it: {
      'Close chat': 'Chiudi chat',
      'Open chat': 'Apri chat',
      'Your requests': 'Le tue richieste',
      'Messages': 'Messaggi',
      'Conversation': 'Conversazione',
      'Type a message…': 'Scrivi un messaggio…',
      'Message': 'Messaggio',
      'Send': 'Invia',
      'Attach a file': 'Allega un file',
      'Attach a photo or PDF': 'Allega una foto o un PDF',
      'Your name': 'Il tuo nome',
      'Your email (so we can reply if you leave)': 'La tua email (per risponderti se esci)',
      'About you': 'Su di te',
      'Skip': 'Salta',
      'Save': 'Salva',
      'Online': 'Online',
      'Connecting…': 'Connessione…',
      'Offline — messages will be sent when the connection returns': 'Offline: i messaggi saranno inviati quando torna la connessione',
      'Waiting for the team': 'In attesa del team',
      'You': 'Tu',
      'Agent': 'Operatore',
      'Rate the help you got': 'Valuta l\'aiuto ricevuto',
      'No requests yet.': 'Ancora nessuna richiesta.',
      'Loading your requests…': 'Caricamento delle tue richieste…',
      '{name} is typing…': '{name} sta scrivendo…',
      'The message could not be sent.': 'Non è stato possibile inviare il messaggio.',
      'The message could not be sent ({status}).': 'Non è stato possibile inviare il messaggio ({status}).',
      'The message has {chars} characters; the limit is {limit}. Shorten it or split it.': 'Il messaggio ha {chars} caratteri; il limite è {limit}. Accorcialo o dividilo.',
      'The file could not be sent: no connection. Try again.': 'Non è stato possibile inviare il file: nessuna connessione. Riprova.',
      'The file could not be sent ({status}).': 'Non è stato possibile inviare il file ({status}).',
      'The file could not be sent: the connection failed. Try again.': 'Non è stato possibile inviare il file: la connessione si è interrotta. Riprova.',
      'Download {name}': 'Scarica {name}',
      'The file could not be downloaded. Try again.': 'Non è stato possibile scaricare il file. Riprova.',
      'That could not be saved; try again.': 'Non è stato possibile salvare; riprova.',
      'No connection; try again.': 'Nessuna connessione; riprova.',
      'Your requests could not be loaded; try again in a moment.': 'Non è stato possibile caricare le tue richieste; riprova tra un momento.',
    },
    pt: {
      'Close chat': 'Fechar chat',
      'Open chat': 'Abrir chat',
      'Your requests': 'Seus pedidos',
      'Messages': 'Mensagens',
      'Conversation': 'Conversa',
      'Type a message…': 'Escreva uma mensagem…',
      'Message': 'Mensagem',
      'Send': 'Enviar',
      'Attach a file': 'Anexar arquivo',
      'Attach a photo or PDF': 'Anexar uma foto ou PDF',
      'Your name': 'Seu nome',
      'Your email (so we can reply if you leave)': 'Seu e-mail (para respondermos se você sair)',
      'About you': 'Sobre você',
      'Skip': 'Pular',
      'Save': 'Salvar',
      'Online': 'Online',
      'Connecting…': 'Conectando…',
      'Offline — messages will be sent when the connection returns': 'Offline — as mensagens serão enviadas quando a conexão voltar',
      'Waiting for the team': 'Aguardando a equipe',
      'You': 'Você',
      'Agent': 'Atendente',
      'Rate the help you got': 'Avalie a ajuda recebida',
      'No requests yet.': 'Nenhum pedido ainda.',
      'Loading your requests…': 'Carregando seus pedidos…',
      '{name} is typing…': '{name} está a escrever…',
      'The message could not be sent.': 'Não foi possível enviar a mensagem.',
      'The message could not be sent ({status}).': 'Não foi possível enviar a mensagem ({status}).',
      'The message has {chars} characters; the limit is {limit}. Shorten it or split it.': 'A mensagem tem {chars} caracteres; o limite é {limit}. Encurte-a ou divida-a.',
      'The file could not be sent: no connection. Try again.': 'Não foi possível enviar o ficheiro: sem ligação. Tente novamente.',
      'The file could not be sent ({status}).': 'Não foi possível enviar o ficheiro ({status}).',
      'The file could not be sent: the connection failed. Try again.': 'Não foi possível enviar o ficheiro: a ligação falhou. Tente novamente.',
      'Download {name}': 'Descarregar {name}',
      'The file could not be downloaded. Try again.': 'Não foi possível descarregar o ficheiro. Tente novamente.',
      'That could not be saved; try again.': 'Não foi possível guardar; tente novamente.',
      'No connection; try again.': 'Sem ligação; tente novamente.',
      'Your requests could not be loaded; try again in a moment.': 'Não foi possível carregar os seus pedidos; tente novamente dentro de momentos.',
    },
    nl: {
      'Close chat': 'Chat sluiten',
      'Open chat': 'Chat openen',
      'Your requests': 'Je aanvragen',
      'Messages': 'Berichten',
      'Conversation': 'Gesprek',
      'Type a message…': 'Typ een bericht…',
      'Message': 'Bericht',
      'Send': 'Verzenden',
      'Attach a file': 'Bestand bijvoegen',
      'Attach a photo or PDF': 'Foto of pdf bijvoegen',
      'Your name': 'Je naam',
      'Your email (so we can reply if you leave)': 'Je e-mail (zodat we kunnen antwoorden als je weggaat)',
      'About you': 'Over jou',
      'Skip': 'Overslaan',
      'Save': 'Opslaan',
      'Online': 'Online',
      'Connecting…': 'Verbinden…',
      'Offline — messages will be sent when the connection returns': 'Offline — berichten worden verstuurd zodra de verbinding terug is',
      'Waiting for the team': 'Wacht op het team',
      'You': 'Jij',
      'Agent': 'Medewerker',
      'Rate the help you got': 'Beoordeel de hulp',
      'No requests yet.': 'Nog geen aanvragen.',
      'Loading your requests…': 'Je aanvragen laden…',
      '{name} is typing…': '{name} typt…',
      'The message could not be sent.': 'Het bericht kon niet worden verzonden.',
      'The message could not be sent ({status}).': 'Het bericht kon niet worden verzonden ({status}).',
      'The message has {chars} characters; the limit is {limit}. Shorten it or split it.': 'Het bericht heeft {chars} tekens; de limiet is {limit}. Maak het korter of splits het.',
      'The file could not be sent: no connection. Try again.': 'Het bestand kon niet worden verzonden: geen verbinding. Probeer het opnieuw.',
      'The file could not be sent ({status}).': 'Het bestand kon niet worden verzonden ({status}).',
      'The file could not be sent: the connection failed. Try again.': 'Het bestand kon niet worden verzonden: de verbinding viel weg. Probeer het opnieuw.',
      'Download {name}': '{name} downloaden',
      'The file could not be downloaded. Try again.': 'Het bestand kon niet worden gedownload. Probeer het opnieuw.',
      'That could not be saved; try again.': 'Dat kon niet worden opgeslagen; probeer het opnieuw.',
      'No connection; try again.': 'Geen verbinding; probeer het opnieuw.',
      'Your requests could not be loaded; try again in a moment.': 'Je aanvragen konden niet worden geladen; probeer het zo opnieuw.',
    },
  };
  // Read once the page has its lang attribute; English where the widget has no translation.
  let labelLanguage = null;
  function uiLanguage() {
    if (labelLanguage === null) {
      const primary = (pageLanguage() || 'en').split(/[-_]/)[0].toLowerCase();
      labelLanguage = TRANSLATIONS[primary] ? primary : 'en';
    }
    return labelLanguage;
  }
  /** `english` in the page's language; `{name}` and the like are filled from `values`. */
  function t(english, values) {
    const words = TRANSLATIONS[uiLanguage()];
    const text = (words && words[english]) || english;
    return values ? text.replace(/\{(\w+)\}/g, (whole, key) => (key in values ? String(values[key]) : whole)) : text;
  }

  // The page's language (its lang attribute, else the browser's): the bot answers in it when a
  // message is too short to tell ("hi", "ok").
  function pageLanguage() {
    const lang = (document.documentElement.getAttribute('lang') || navigator.language || '').trim();
    return /^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$/.test(lang) ? lang : undefined;
  }

  function sendFrame(frame) {
    if (!socket || socket.readyState !== 1) return false;
    try { socket.send(JSON.stringify(frame)); return true; } catch (_) { return false; }
  }

  const requestHistory = () => sendFrame({ type: 'history', after: state.cursor });

  /** Tells the server which replies the customer has seen: those shown while the chat is open
   *  and the page visible (agents see "Seen" in the panel). */
  let seenSent = 0;
  function reportSeen() {
    if (!state.open || document.visibilityState !== 'visible') return;
    let latest = 0;
    for (const m of state.stored.values()) if (m.sender !== 'customer' && m.seq > latest) latest = m.seq;
    if (latest <= seenSent) return;
    if (mode === 'http') {
      seenSent = latest;
      request('POST', '/webchat/seen', { seq: latest }).catch(() => { seenSent = 0; });
    } else if (socketReady && sendFrame({ type: 'seen', seq: latest })) {
      seenSent = latest;
    }
  }

  async function connect() {
    clearTimeout(timers.reconnect);
    timers.reconnect = 0;
    if (socket || connecting || mode === 'http') return;
    if (typeof WebSocket !== 'function') { startFallback(); return; }
    connecting = true;
    let token;
    try {
      token = await ensureSession();
    } catch (_) {
      setConnection('offline');
      scheduleReconnect();
      return;
    } finally {
      connecting = false;
    }
    if (!socket && mode === 'ws') openSocket(token, false);
  }

  /** Opens a socket; a trial one (from the HTTP fallback) only matters if it reaches ready. */
  function openSocket(token, trial) {
    let ws;
    try { ws = new WebSocket(wsUrl(token)); } catch (_) { ws = null; }
    if (!ws) { if (!trial) socketFailed(token, false); return; }
    ws.sbToken = token;
    ws.sbTrial = trial;
    socket = ws;
    ws.onmessage = (event) => {
      lastFrameAt = Date.now();
      let frame;
      try { frame = JSON.parse(event.data); } catch (_) { return; }
      if (frame && frame.type === 'ready') ws.sbReady = true;
      handleFrame(frame);
    };
    ws.onclose = () => socketClosed(ws);
    ws.onerror = () => { /* a close event always follows */ };
  }

  function socketClosed(ws) {
    if (ws !== socket) return; // already handled, or superseded
    socket = null;
    socketReady = false;
    inflight.clear(); // unanswered sends go again on the next connection
    stopPing();
    setTyping(false);
    if (ws.sbTrial && !ws.sbReady) return; // the HTTP fallback carries on
    setConnection('offline');
    if (ws.sbReady) { scheduleReconnect(); return; }
    socketFailed(ws.sbToken, true);
  }

  /** The socket never reached ready. A rejected token looks just like a network error to a
   *  browser socket, so ask over HTTP, which renews the session on 401. */
  async function socketFailed(token, checkToken) {
    failedOpens++;
    if (checkToken) {
      try {
        const res = await request('GET', '/webchat/messages?after=' + state.cursor);
        if (res.ok && res.data) { setConversation(res.data.conversation); ingest(res.data.messages || [], false); }
      } catch (_) { /* server unreachable: plain backoff */ }
      if (state.token && state.token !== token) { failedOpens = 0; connect(); return; }
    }
    if (socket || mode === 'http') return;
    if (!everReady && failedOpens >= 3) startFallback();
    else scheduleReconnect();
  }

  function scheduleReconnect() {
    if (timers.reconnect || mode === 'http') return;
    timers.reconnect = setTimeout(connect, backoffDelay(attempt++));
  }

  /** Abandons a socket we believe dead without waiting for a close handshake that may never come. */
  function dropSocket(ws) {
    ws.onclose = null;
    ws.onmessage = null;
    try { ws.close(); } catch (_) { /* already closing */ }
    socketClosed(ws);
  }

  function startPing() {
    stopPing();
    timers.ping = setInterval(ping, PING_EVERY);
  }

  function stopPing() {
    clearInterval(timers.ping);
    clearTimeout(timers.liveness);
  }

  /** Pings, and drops the socket if nothing at all comes back in time (half-open connections). */
  function ping() {
    const ws = socket;
    if (!ws || !socketReady) return;
    const sentAt = Date.now();
    sendFrame({ type: 'ping' });
    clearTimeout(timers.liveness);
    timers.liveness = setTimeout(() => {
      if (socket === ws && lastFrameAt < sentAt) dropSocket(ws);
    }, PONG_WITHIN);
  }

  function handleFrame(frame) {
    switch (frame && frame.type) {
      case 'ready': return onReady(frame);
      case 'history': {
        const messages = frame.messages || [];
        setConversation(frame.conversation);
        ingest(messages, false);
        if (messages.length >= HISTORY_PAGE) requestHistory();
        return;
      }
      case 'message': return ingest([frame.message], true);
      case 'ack': return onAck(frame);
      case 'typing': return setTyping(!!frame.on, typeof frame.name === 'string' ? frame.name : '');
      case 'conversation': return setConversation(frame.conversation);
      case 'seen': return markSeen(frame.seq);
      case 'error': return onError(frame);
      default: return; // pong, or something newer than this widget
    }
  }

  function onReady(frame) {
    socketReady = true;
    everReady = true;
    failedOpens = 0;
    attempt = 0;
    if (mode === 'http') stopFallback(); // the 60 s retry worked: back to the socket
    setConversation(frame.conversation || null);
    setConnection('online');
    seenSent = 0; // a new connection may be to another node: say it again
    requestHistory();
    flushPending();
    startPing();
  }

  function onAck(frame) {
    dropLocal(frame.client_id);
    setConversation(frame.conversation);
    if (frame.message) ingest([frame.message], false, true);
    else render();
  }

  function onError(frame) {
    const clientId = frame.client_id;
    const entry = clientId ? state.local.find((m) => m.client_id === clientId) : null;
    if (clientId) inflight.delete(clientId);
    if (frame.code === 'rate_limited') return retryLater(retryDelay(frame.message), false);
    if (frame.code === 'unavailable') return retryLater(3000, !clientId);
    if (entry) failLocal(entry, frame.message);
    else if (window.console) console.warn('[switchboard]', frame.code, frame.message);
  }

  // ---- files -------------------------------------------------------------------------------

  /** What the server accepts; it checks the content itself, this only guides the file picker. */
  const ACCEPTED_FILES = 'image/png,image/jpeg,image/gif,image/webp,application/pdf,text/plain,.pdf,.txt';

  /** Sends one file as its own message, showing the upload's progress; a refusal says why. */
  async function sendFile(file) {
    if (!file) return;
    const upload = { client_id: newClientId(), name: String(file.name || 'file'), progress: 0, error: null };
    state.uploads.push(upload);
    render(true);
    let token;
    try { token = await ensureSession(); } catch (_) { return failUpload(upload, t('The file could not be sent: no connection. Try again.')); }
    const form = new FormData();
    form.append('client_id', upload.client_id);
    form.append('file', file, upload.name);
    const xhr = new XMLHttpRequest();
    xhr.open('POST', server + '/webchat/files');
    xhr.setRequestHeader('Authorization', 'Bearer ' + token);
    xhr.upload.onprogress = (event) => {
      if (!event.lengthComputable) return;
      upload.progress = Math.min(99, Math.round((event.loaded * 100) / event.total));
      render();
    };
    xhr.onload = () => {
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch (_) { /* not JSON: a proxy's page */ }
      if (xhr.status >= 200 && xhr.status < 300 && data && data.message) {
        state.uploads.splice(state.uploads.indexOf(upload), 1);
        onAck({ client_id: upload.client_id, message: data.message, conversation: data.conversation });
      } else {
        failUpload(upload, (data && data.error && data.error.message) || t('The file could not be sent ({status}).', { status: xhr.status }));
      }
    };
    xhr.onerror = () => failUpload(upload, t('The file could not be sent: the connection failed. Try again.'));
    xhr.send(form);
  }

  function failUpload(upload, message) {
    upload.error = message;
    render();
  }

  const fileUrls = new Map(); // file url → Promise of an object URL for its bytes

  /** A file's bytes as an object URL: the download needs the visitor's token, which no <img> sends. */
  function fileObjectUrl(url) {
    if (!fileUrls.has(url)) {
      const loading = (async () => {
        const token = await ensureSession();
        const res = await fetch(server + url, { headers: { Authorization: 'Bearer ' + token } });
        if (!res.ok) throw new Error('status ' + res.status);
        return URL.createObjectURL(await res.blob());
      })();
      loading.catch(() => fileUrls.delete(url));
      fileUrls.set(url, loading);
    }
    return fileUrls.get(url);
  }

  function sizeText(bytes) {
    if (bytes >= 1048576) return (bytes / 1048576).toFixed(1) + ' MB';
    if (bytes >= 1024) return Math.round(bytes / 1024) + ' KB';
    return bytes + ' bytes';
  }

  /** Thumbnails for images, a download chip for other files. */
  function buildFiles(files) {
    const box = h('div', { class: 'sb-files', 'data-sb': 'files' });
    for (const file of files) {
      if (!file || typeof file.url !== 'string') continue;
      const name = String(file.name || 'file');
      if (/^image\//.test(file.content_type)) {
        const image = h('img', { class: 'sb-thumb', alt: name, 'data-sb': 'file-image' });
        fileObjectUrl(file.url).then((src) => { image.src = src; }).catch(() => { image.alt = name + ' (could not be loaded)'; });
        box.append(h('button', { type: 'button', class: 'sb-thumb-button', 'aria-label': t('Download {name}', { name }),
          onclick: () => download(file.url, name) }, image));
      } else {
        box.append(h('button', { type: 'button', class: 'sb-file', 'data-sb': 'file', 'aria-label': t('Download {name}', { name }),
          text: name + ' · ' + sizeText(Number(file.size) || 0), onclick: () => download(file.url, name) }));
      }
    }
    return box;
  }

  async function download(url, name) {
    try {
      const link = h('a', { href: await fileObjectUrl(url), download: name, 'data-sb': 'download' });
      ui.frame.append(link);
      link.click();
      link.remove();
    } catch (_) {
      announce(t('The file could not be downloaded. Try again.'));
    }
  }

  // ---- HTTP fallback (no WebSocket, or it keeps failing) ------------------------------------

  function startFallback() {
    if (mode === 'http') return;
    mode = 'http';
    clearTimeout(timers.reconnect);
    timers.reconnect = 0;
    const gen = ++fallbackGen;
    fallbackAbort = typeof AbortController === 'function' ? new AbortController() : null;
    pollLoop(gen, fallbackAbort && fallbackAbort.signal);
    httpFlush();
    if (typeof WebSocket === 'function') timers.wsRetry = setInterval(tryWebSocketAgain, WS_RETRY_IN_FALLBACK);
  }

  function stopFallback() {
    mode = 'ws';
    fallbackGen++;
    if (fallbackAbort) fallbackAbort.abort();
    fallbackAbort = null;
    clearInterval(timers.wsRetry);
  }

  function tryWebSocketAgain() {
    if (mode === 'http' && !socket && state.token) openSocket(state.token, true);
  }

  /** Catches up with plain history once, then long-polls for as long as the fallback lasts. */
  async function pollLoop(gen, signal) {
    let path = '/webchat/messages?after=';
    let failures = 0;
    while (gen === fallbackGen) {
      const started = Date.now();
      try {
        const res = await request('GET', path + state.cursor, undefined, signal);
        if (gen !== fallbackGen) return;
        if (!res.ok || !res.data) throw new Error('poll failed: ' + res.status);
        failures = 0;
        setConnection('online');
        setConversation(res.data.conversation);
        const messages = res.data.messages || [];
        ingest(messages, path.indexOf('poll') >= 0);
        path = '/webchat/poll?after=';
        // A server answering empty at once must not turn this into a busy loop.
        if (!messages.length && Date.now() - started < 1000) await sleep(1000);
      } catch (_) {
        if (gen !== fallbackGen) return;
        setConnection('offline');
        await sleep(backoffDelay(failures++));
      }
    }
  }

  let httpFlushing = false;

  /** Posts pending messages one at a time, in order, until none are left. */
  async function httpFlush() {
    if (httpFlushing) return;
    httpFlushing = true;
    let failures = 0;
    try {
      while (mode === 'http') {
        const entry = state.local.find((m) => !m.error);
        if (!entry) break;
        let res;
        try {
          res = await request('POST', '/webchat/messages', { client_id: entry.client_id, text: entry.text, language: pageLanguage() });
        } catch (_) {
          setConnection('offline');
          await sleep(backoffDelay(failures++));
          continue;
        }
        const error = (res.data && res.data.error) || {};
        if (res.ok && res.data && res.data.message) {
          failures = 0;
          onAck({ client_id: entry.client_id, message: res.data.message, conversation: res.data.conversation });
        } else if (res.status === 429) {
          await sleep(retryDelay(error.message));
        } else if (res.status >= 500) {
          await sleep(backoffDelay(failures++));
        } else {
          failLocal(entry, error.message || t('The message could not be sent ({status}).', { status: res.status }));
        }
      }
    } finally {
      httpFlushing = false;
    }
  }

  // ---- UI -----------------------------------------------------------------------------------

  // Static markup only; message text never goes through innerHTML.
  const ICON_CHAT = '<svg class="sb-icon-chat" viewBox="0 0 24 24" fill="currentColor" aria-hidden="true"><path d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z"/></svg>';
  const ICON_CLIP = '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true"><path d="M21 11.5l-8.6 8.6a5.5 5.5 0 0 1-7.8-7.8l8.6-8.6a3.7 3.7 0 0 1 5.2 5.2l-8.6 8.6a1.8 1.8 0 0 1-2.6-2.6l7.9-7.9"/></svg>';
  const ICON_LIST = '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2.2" stroke-linecap="round" aria-hidden="true"><path d="M8 6h12M8 12h12M8 18h12M4 6h.01M4 12h.01M4 18h.01"/></svg>';
  const ICON_CLOSE = '<svg class="sb-icon-close" viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2.4" stroke-linecap="round" aria-hidden="true"><path d="M6 6l12 12M18 6L6 18"/></svg>';
  const ICON_SEND = '<svg viewBox="0 0 24 24" fill="currentColor" aria-hidden="true"><path d="M3.4 20.4l17.45-7.48a1 1 0 0 0 0-1.84L3.4 3.6a.99.99 0 0 0-1.39.91L2 9.12c0 .5.37.93.87.99L17 12 2.87 13.88c-.5.07-.87.5-.87 1l.01 4.61c0 .71.73 1.2 1.39.91z"/></svg>';

  const STYLES = `
:host { all: initial; }
.sb-frame { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
  color: #111827; -webkit-font-smoothing: antialiased; }
.sb-frame *, .sb-frame *::before, .sb-frame *::after { box-sizing: border-box; }
[hidden] { display: none !important; }
button { font: inherit; }
button:focus-visible, textarea:focus-visible, input:focus-visible { outline: 3px solid #1e293b; outline-offset: 2px; }
.sb-header button:focus-visible { outline: 2px solid var(--sb-text); outline-offset: 1px; }
.sb-scroll:focus-visible { outline: 3px solid #1e293b; outline-offset: -3px; }
.sb-sr { position: absolute; width: 1px; height: 1px; margin: -1px; padding: 0; overflow: hidden;
  clip: rect(0 0 0 0); white-space: nowrap; border: 0; }
.sb-launcher { position: fixed; bottom: 20px; right: 20px; z-index: 2147483000; width: 56px; height: 56px;
  padding: 0; border: 0; border-radius: 50%; background: var(--sb-primary); color: var(--sb-text);
  cursor: pointer; display: flex; align-items: center; justify-content: center;
  box-shadow: 0 6px 20px rgba(0,0,0,.22); transition: transform .15s ease; }
.sb-launcher:hover { transform: scale(1.06); }
.sb-launcher svg { width: 26px; height: 26px; }
.sb-icon-close, .sb-is-open .sb-icon-chat { display: none; }
.sb-is-open .sb-icon-close { display: block; }
.sb-badge { position: absolute; top: 3px; right: 3px; width: 14px; height: 14px; border-radius: 50%;
  background: #ef4444; border: 2px solid #fff; }
.sb-panel { position: fixed; bottom: 88px; right: 20px; z-index: 2147483000; width: 360px; height: 520px;
  max-width: calc(100vw - 40px); max-height: calc(100vh - 108px); display: flex; flex-direction: column;
  background: #fff; border-radius: 16px; overflow: hidden; box-shadow: 0 12px 40px rgba(0,0,0,.22);
  animation: sb-pop .18s ease-out; }
.sb-left .sb-launcher, .sb-left .sb-panel { right: auto; left: 20px; }
.sb-header { display: flex; align-items: center; gap: 8px; padding: 14px 10px 14px 16px;
  background: var(--sb-primary); color: var(--sb-text); }
.sb-heading { flex: 1; min-width: 0; }
.sb-title { font-size: 16px; font-weight: 600; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.sb-status { font-size: 12px; }
.sb-close { flex: none; width: 32px; height: 32px; padding: 0; border: 0; border-radius: 8px;
  background: transparent; color: inherit; cursor: pointer; display: flex; align-items: center; justify-content: center; }
.sb-close:hover { background: rgba(255,255,255,.18); }
.sb-close svg { width: 18px; height: 18px; }
.sb-requests { flex: 1; overflow-y: auto; padding: 12px 16px; background: #fff; }
.sb-requests-title { margin: 0 0 8px; font-size: 15px; }
.sb-requests-note { margin: 8px 0; color: #4b5563; font-size: 13px; }
.sb-request-list { list-style: none; margin: 0; padding: 0; }
.sb-request { display: grid; grid-template-columns: auto 1fr; gap: 2px 8px; padding: 8px 0; border-bottom: 1px solid #e5e7eb; }
.sb-request-state { font-size: 12px; font-weight: 600; padding: 1px 8px; border-radius: 999px; background: #e5e7eb; color: #1f2937; }
.sb-state-waiting_for_you { background: #fef3c7; color: #78350f; }
.sb-state-solved { background: #dcfce7; color: #14532d; }
.sb-request-text { font-size: 13px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.sb-request-time { grid-column: 2; font-size: 11px; color: #4b5563; }
.sb-scroll { flex: 1; overflow-y: auto; padding: 16px 12px 10px; background: #f8fafc; overscroll-behavior: contain; }
.sb-messages { display: flex; flex-direction: column; gap: 6px; }
.sb-row { display: flex; flex-direction: column; align-items: flex-start; }
.sb-row-customer { align-items: flex-end; }
.sb-row-system { align-items: center; }
.sb-bubble { max-width: 80%; padding: 8px 12px; border-radius: 16px; border-bottom-left-radius: 4px;
  background: #e5e7eb; color: #111827; white-space: pre-wrap; overflow-wrap: anywhere; }
.sb-row-customer .sb-bubble { background: var(--sb-primary); color: var(--sb-text);
  border-bottom-left-radius: 16px; border-bottom-right-radius: 4px; }
.sb-row-system .sb-bubble { max-width: 90%; padding: 2px 8px; background: transparent; color: #4b5563;
  font-size: 12px; font-style: italic; text-align: center; }
.sb-meta { margin: 2px 6px 0; font-size: 11px; color: #4b5563; white-space: nowrap; }
.sb-speaker { display: flex; align-items: center; gap: 6px; margin: 6px 0 3px 2px; font-size: 12px; color: #374151; }
.sb-avatar { flex: none; width: 22px; height: 22px; border-radius: 50%; background: #4b5563; color: #fff;
  font-size: 10px; font-weight: 600; display: flex; align-items: center; justify-content: center; }
.sb-row-bot .sb-avatar { background: var(--sb-primary); color: var(--sb-text); }
.sb-avatar svg { width: 13px; height: 13px; }
.sb-row-system .sb-meta { margin-top: 0; }
.sb-pending .sb-bubble { outline: 2px dashed rgba(0,0,0,.25); outline-offset: -2px; }
.sb-failed .sb-bubble { outline: 2px solid #b91c1c; outline-offset: -2px; }
.sb-error { max-width: 80%; margin-top: 3px; color: #b91c1c; font-size: 12px; text-align: right; }
.sb-quick { display: flex; flex-wrap: wrap; gap: 6px; margin-top: 8px; }
.sb-quick button { padding: 6px 12px; font-size: 13px; border-radius: 999px; cursor: pointer;
  border: 1px solid var(--sb-primary); background: #fff; color: var(--sb-primary); }
.sb-quick button:hover { background: var(--sb-primary); color: var(--sb-text); }
.sb-stars button { padding: 2px 6px; font-size: 26px; line-height: 1; border: 0; background: none; color: #6b7280; }
.sb-stars button:hover, .sb-stars button.sb-lit { background: none; color: #b45309; }
.sb-typing { display: inline-flex; gap: 4px; margin-top: 6px; padding: 12px 14px; background: #e5e7eb;
  border-radius: 16px; border-bottom-left-radius: 4px; }
.sb-typing span { width: 7px; height: 7px; border-radius: 50%; background: #6b7280;
  animation: sb-blink 1.2s infinite ease-in-out; }
.sb-typing span:nth-child(2) { animation-delay: .15s; }
.sb-typing span:nth-child(3) { animation-delay: .3s; }
.sb-composer { display: flex; align-items: flex-end; gap: 8px; padding: 10px; background: #fff;
  border-top: 1px solid #e5e7eb; }
.sb-input { flex: 1; min-height: 40px; max-height: 120px; padding: 9px 12px; resize: none; font: inherit;
  line-height: 1.4; color: inherit; background: #fff; border: 1px solid #6b7280; border-radius: 12px; }
.sb-input:focus { border-color: var(--sb-primary); }
.sb-input:focus:not(:focus-visible) { outline: none; }
.sb-send { flex: none; width: 40px; height: 40px; padding: 0; border: 0; border-radius: 12px; cursor: pointer;
  background: var(--sb-primary); color: var(--sb-text); display: flex; align-items: center; justify-content: center; }
.sb-send svg { width: 18px; height: 18px; }
.sb-attach { flex: none; width: 40px; height: 40px; padding: 0; border: 1px solid #6b7280; border-radius: 12px; cursor: pointer;
  background: #fff; color: #1f2937; display: flex; align-items: center; justify-content: center; }
.sb-attach svg { width: 18px; height: 18px; }
.sb-prechat { padding: 10px 12px 4px; background: #fff; border-top: 1px solid #e5e7eb; display: grid; gap: 6px; }
.sb-prechat-field { display: grid; gap: 2px; font-size: 13px; }
.sb-prechat-field input { font: inherit; padding: 6px 10px; border: 1px solid #6b7280; border-radius: 8px; color: inherit; }
.sb-prechat-error { margin: 0; color: #b91c1c; font-size: 12px; }
.sb-prechat-error:empty { display: none; }
.sb-prechat-actions { display: flex; justify-content: flex-end; gap: 8px; }
.sb-prechat-actions button { padding: 5px 12px; border-radius: 8px; cursor: pointer; font-size: 13px;
  border: 1px solid var(--sb-primary); background: #fff; color: var(--sb-primary); }
.sb-prechat-actions .sb-prechat-save { background: var(--sb-primary); color: var(--sb-text); }
.sb-dropping .sb-scroll { outline: 3px dashed var(--sb-primary); outline-offset: -6px; }
.sb-files { display: flex; flex-wrap: wrap; gap: 6px; margin-top: 4px; max-width: 80%; }
.sb-row-customer .sb-files { justify-content: flex-end; }
.sb-thumb-button { padding: 0; border: 0; background: none; cursor: pointer; border-radius: 10px; }
.sb-thumb { display: block; max-width: 180px; max-height: 140px; border-radius: 10px; border: 1px solid #d1d5db; background: #fff; }
.sb-file { padding: 6px 12px; font-size: 13px; border-radius: 10px; cursor: pointer; border: 1px solid #6b7280;
  background: #fff; color: #111827; overflow-wrap: anywhere; text-align: left; }
.sb-empty { display: none; }
@keyframes sb-blink { 0%, 80%, 100% { opacity: .3; transform: none; } 40% { opacity: 1; transform: translateY(-3px); } }
@keyframes sb-pop { from { opacity: 0; transform: translateY(8px) scale(.98); } to { opacity: 1; transform: none; } }
@media (max-width: 479px) {
  .sb-panel, .sb-left .sb-panel { top: 0; right: 0; bottom: 0; left: 0; width: 100%; height: 100%;
    max-width: none; max-height: none; border-radius: 0; }
  .sb-is-open .sb-launcher { display: none; }
  .sb-input { font-size: 16px; } /* below 16px, iOS zooms the page on focus */
}
/* Short screens (phones in landscape, 400 % zoom): keep room for the conversation while typing. */
@media (max-height: 480px) {
  .sb-header { padding: 6px 8px 6px 12px; }
  .sb-title { font-size: 14px; }
  .sb-scroll { padding: 8px 10px 6px; }
  .sb-composer { padding: 6px; }
  .sb-input { min-height: 36px; max-height: 4.6em; padding: 6px 10px; }
  .sb-send, .sb-attach { width: 36px; height: 36px; }
}
@media (prefers-reduced-motion: reduce) { .sb-panel, .sb-typing span { animation: none; } }
`;

  /** createElement with attributes, event handlers (onX) and children. */
  function h(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === 'class') node.className = value;
      else if (key === 'text') node.textContent = value;
      else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  const ui = {};
  const rows = new Map(); // render key → row element, reused so acks don't rebuild bubbles

  /** Builds the whole UI detached, so the public API works before <body> exists. */
  function buildUi() {
    ui.host = h('div', { id: 'switchboard-widget' });
    ui.host.style.setProperty('display', 'block', 'important');
    const root = ui.host.attachShadow ? ui.host.attachShadow({ mode: 'open' }) : ui.host;
    ui.host.setAttribute('lang', uiLanguage());

    ui.launcher = h('button', { class: 'sb-launcher', type: 'button', 'data-sb': 'launcher',
      'aria-expanded': 'false', onclick: () => setOpen(!state.open, true) });
    ui.launcher.innerHTML = ICON_CHAT + ICON_CLOSE;
    ui.badge = h('span', { class: 'sb-badge', hidden: '' });
    ui.launcher.append(ui.badge);

    ui.title = h('div', { class: 'sb-title' });
    ui.status = h('div', { class: 'sb-status', 'data-sb': 'status', 'aria-live': 'polite' });
    const close = h('button', { class: 'sb-close', type: 'button', 'data-sb': 'close',
      'aria-label': t('Close chat'), onclick: () => setOpen(false, true) });
    ui.requestsToggle = h('button', { class: 'sb-close sb-requests-toggle', type: 'button', 'data-sb': 'requests-toggle',
      'aria-label': t('Your requests'), 'aria-expanded': 'false', onclick: toggleRequests });
    ui.requestsToggle.innerHTML = ICON_LIST;
    ui.requests = h('div', { class: 'sb-requests', 'data-sb': 'requests', role: 'region', 'aria-label': t('Your requests'),
      tabindex: '-1', hidden: '' });
    close.innerHTML = ICON_CLOSE.replace('sb-icon-close', '');

    ui.messages = h('div', { class: 'sb-messages', 'data-sb': 'messages', role: 'log', 'aria-live': 'polite',
      'aria-label': t('Messages') });
    ui.typing = h('div', { class: 'sb-typing', 'data-sb': 'typing', hidden: '', 'aria-hidden': 'true' },
      h('span'), h('span'), h('span'));
    // Focusable so keyboard users can scroll the conversation.
    ui.scroll = h('div', { class: 'sb-scroll', 'data-sb': 'scroll', tabindex: '0', role: 'region',
      'aria-label': t('Conversation') }, ui.messages, ui.typing);
    // Typing is announced here; connection state through the status line.
    ui.announcer = h('div', { class: 'sb-sr', 'data-sb': 'announcer', role: 'status', 'aria-live': 'polite' });

    ui.input = h('textarea', { class: 'sb-input', 'data-sb': 'input', rows: '1',
      placeholder: t('Type a message…'), 'aria-label': t('Message'), dir: 'auto', onkeydown: onInputKey,
      oninput: () => { autoGrow(); reportTyping(); } });
    const sendButton = h('button', { class: 'sb-send', type: 'submit', 'data-sb': 'send', 'aria-label': t('Send') });
    sendButton.innerHTML = ICON_SEND;
    ui.fileInput = h('input', { type: 'file', accept: ACCEPTED_FILES, hidden: '', 'data-sb': 'file-input',
      'aria-label': t('Attach a file'), onchange: () => {
        for (const file of ui.fileInput.files) sendFile(file);
        ui.fileInput.value = '';
      } });
    const attach = h('button', { class: 'sb-attach', type: 'button', 'data-sb': 'attach', 'aria-label': t('Attach a file'),
      title: t('Attach a photo or PDF'), onclick: () => ui.fileInput.click() });
    attach.innerHTML = ICON_CLIP;
    const form = h('form', { class: 'sb-composer', onsubmit: (e) => { e.preventDefault(); submitInput(); } },
      attach, ui.fileInput, ui.input, sendButton);

    ui.panel = h('div', { class: 'sb-panel', 'data-sb': 'panel', role: 'dialog', hidden: '',
      onkeydown: onPanelKey, ondragover: onDragOver, ondragleave: onDragLeave, ondrop: onDrop },
    h('div', { class: 'sb-header' }, h('div', { class: 'sb-heading' }, ui.title, ui.status), ui.requestsToggle, close),
    ui.requests, ui.scroll, buildPrechat(), form, ui.announcer);

    ui.frame = h('div', { class: 'sb-frame' }, ui.panel, ui.launcher);
    root.append(h('style', { text: STYLES }), ui.frame);
  }

  function attachUi() {
    if (document.body) document.body.appendChild(ui.host);
    else document.addEventListener('DOMContentLoaded', () => document.body.appendChild(ui.host));
  }

  function applyLook() {
    ui.frame.style.setProperty('--sb-primary', look.primaryColor);
    ui.frame.style.setProperty('--sb-text', look.textColor);
    ui.frame.classList.toggle('sb-left', look.position === 'left');
    ui.title.textContent = look.title;
    ui.panel.setAttribute('aria-label', look.title);
    render();
  }

  /** The pre-chat form: asked of anonymous visitors when configured, once, and skippable. */
  function buildPrechat() {
    ui.prechatName = h('input', { id: 'sb-prechat-name', type: 'text', autocomplete: 'name', maxlength: '120', 'data-sb': 'prechat-name' });
    ui.prechatEmail = h('input', { id: 'sb-prechat-email', type: 'email', autocomplete: 'email', maxlength: '254', 'data-sb': 'prechat-email' });
    ui.prechatError = h('p', { class: 'sb-prechat-error', 'data-sb': 'prechat-error', role: 'alert' });
    ui.prechatNameField = h('div', { class: 'sb-prechat-field' }, h('label', { for: 'sb-prechat-name', text: t('Your name') }), ui.prechatName);
    ui.prechatEmailField = h('div', { class: 'sb-prechat-field' }, h('label', { for: 'sb-prechat-email', text: t('Your email (so we can reply if you leave)') }), ui.prechatEmail);
    ui.prechat = h('form', { class: 'sb-prechat', 'data-sb': 'prechat', 'aria-label': t('About you'), hidden: '', onsubmit: submitPrechat },
      ui.prechatNameField, ui.prechatEmailField, ui.prechatError,
      h('div', { class: 'sb-prechat-actions' },
        h('button', { type: 'button', class: 'sb-prechat-skip', 'data-sb': 'prechat-skip', text: t('Skip'), onclick: () => finishPrechat() }),
        h('button', { type: 'submit', class: 'sb-prechat-save', 'data-sb': 'prechat-save', text: t('Save') })));
    return ui.prechat;
  }

  function updatePrechat() {
    const asked = state.prechatFields;
    ui.prechat.hidden = !!siteUser || !asked.length || load('profiled') === '1';
    ui.prechatNameField.hidden = !asked.includes('name');
    ui.prechatEmailField.hidden = !asked.includes('email');
  }

  function finishPrechat() {
    save('profiled', '1');
    updatePrechat();
    ui.input.focus();
  }

  async function submitPrechat(event) {
    event.preventDefault();
    ui.prechatError.textContent = '';
    const body = { name: ui.prechatName.value, email: ui.prechatEmail.value };
    try {
      const res = await request('POST', '/webchat/profile', body);
      if (res.ok) return finishPrechat();
      ui.prechatError.textContent = (res.data && res.data.error && res.data.error.message) || t('That could not be saved; try again.');
    } catch (_) {
      ui.prechatError.textContent = t('No connection; try again.');
    }
  }

  /** Files dropped anywhere on the open chat are sent, one message each. */
  function onDragOver(event) {
    if (!event.dataTransfer || ![...event.dataTransfer.types].includes('Files')) return;
    event.preventDefault();
    ui.panel.classList.add('sb-dropping');
  }

  function onDragLeave(event) {
    if (!ui.panel.contains(event.relatedTarget)) ui.panel.classList.remove('sb-dropping');
  }

  function onDrop(event) {
    ui.panel.classList.remove('sb-dropping');
    if (!event.dataTransfer || !event.dataTransfer.files.length) return;
    event.preventDefault();
    for (const file of event.dataTransfer.files) sendFile(file);
  }

  /** Agents see that the customer is typing: a frame at most every 3 s while they do. */
  function reportTyping() {
    const now = Date.now();
    if (!ui.input.value.trim() || now - typingSentAt < 3000 || !socketReady) return;
    typingSentAt = now;
    sendFrame({ type: 'typing' });
  }

  function onInputKey(event) {
    // Enter sends; Shift+Enter is a newline; never interrupt an IME composition.
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submitInput();
    }
  }

  function autoGrow() {
    ui.input.style.height = 'auto';
    ui.input.style.height = Math.min(ui.input.scrollHeight + 2, 120) + 'px';
  }

  function submitInput() {
    if (!ui.input.value.trim()) return;
    send(ui.input.value);
    ui.input.value = '';
    autoGrow();
    ui.input.focus();
  }

  /** Opens or closes the chat; `focus` moves focus into it, or back to the launcher on close. */
  function setOpen(open, focus) {
    state.open = open;
    save('open', open ? '1' : '0');
    ui.panel.hidden = !open;
    ui.frame.classList.toggle('sb-is-open', open);
    ui.launcher.setAttribute('aria-expanded', String(open));
    ui.launcher.setAttribute('aria-label', open ? t('Close chat') : t('Open chat'));
    updateModal();
    if (!open) {
      if (focus) ui.launcher.focus({ preventScroll: true });
      return;
    }
    setUnread(false);
    scrollToBottom();
    reportSeen();
    if (focus) ui.input.focus({ preventScroll: true });
  }

  // On a phone the open chat covers the page: it is modal, and the page behind it is inert.
  const fullScreen = window.matchMedia ? window.matchMedia('(max-width: 479px)') : null;
  const madeInert = new Set();

  function updateModal() {
    const modal = state.open && !!fullScreen && fullScreen.matches;
    ui.panel.setAttribute('aria-modal', String(modal));
    if (modal && document.body) {
      for (const node of document.body.children) {
        if (node === ui.host || node.inert || node.tagName === 'SCRIPT') continue;
        node.inert = true;
        madeInert.add(node);
      }
    } else {
      madeInert.forEach((node) => { node.inert = false; });
      madeInert.clear();
    }
  }

  function onPanelKey(event) {
    if (event.key === 'Escape') { setOpen(false, true); return; }
    if (event.key !== 'Tab' || ui.panel.getAttribute('aria-modal') !== 'true') return;
    // Modal: Tab wraps around inside the chat instead of leaving for the inert page.
    const focusable = [...ui.panel.querySelectorAll('button, textarea, [tabindex="0"]')]
      .filter((el) => !el.disabled && el.getClientRects().length > 0);
    if (!focusable.length) return;
    const first = focusable[0];
    const last = focusable[focusable.length - 1];
    const active = ui.host.shadowRoot ? ui.host.shadowRoot.activeElement : document.activeElement;
    if (event.shiftKey && active === first) { event.preventDefault(); last.focus(); }
    else if (!event.shiftKey && active === last) { event.preventDefault(); first.focus(); }
  }

  function announce(text) {
    ui.announcer.textContent = text;
  }

  function setUnread(on) { ui.badge.hidden = !on; }

  function setTyping(on, name) {
    clearTimeout(timers.typing);
    if (on && ui.typing.hidden) announce(t('{name} is typing…', { name: name || look.title }));
    else if (!on && !ui.typing.hidden) announce('');
    ui.typing.hidden = !on;
    if (!on) return;
    timers.typing = setTimeout(() => setTyping(false), TYPING_MAX); // never stuck on
    if (isNearBottom()) scrollToBottom();
  }

  function setConnection(connection) {
    state.connection = connection;
    updateStatus();
  }

  function updateStatus() {
    const c = state.conversation;
    const handler = c && String(c.status).toLowerCase() !== 'closed' ? c.handler : null;
    let text = t('Online');
    if (state.connection === 'connecting') text = t('Connecting…');
    else if (state.connection === 'offline') text = t('Offline — messages will be sent when the connection returns');
    else if (handler === 'agent') text = "You're talking to our team";
    else if (handler === 'queue') text = t('Waiting for the team');
    if (state.teamBack && state.connection === 'online' && handler !== 'agent') text += ' · team back ' + state.teamBack;
    ui.status.textContent = text;
    ui.status.setAttribute('data-state', state.connection);
  }

  const isNearBottom = () => ui.scroll.scrollHeight - ui.scroll.scrollTop - ui.scroll.clientHeight < 80;
  const scrollToBottom = () => { ui.scroll.scrollTop = ui.scroll.scrollHeight; };

  /** Everything to show, in order: welcome, stored messages by seq, then unsent ones. */
  function entries() {
    const list = [];
    if (look.welcomeMessage) list.push({ key: WELCOME_KEY, sender: 'bot', text: look.welcomeMessage, meta: '' });
    const stored = [...state.stored.values()].sort((a, b) => a.seq - b.seq);
    const storedClientIds = new Set();
    for (const m of stored) {
      if (m.client_id) storedClientIds.add(m.client_id);
      list.push({
        // Customer messages are keyed by client_id so the pending bubble becomes the stored one.
        key: m.client_id ? 'c:' + m.client_id : 'm:' + m.id,
        sender: SENDERS.indexOf(m.sender) >= 0 ? m.sender : 'bot',
        author: typeof m.author === 'string' ? m.author : '',
        text: String(m.text == null ? '' : m.text), seq: m.seq, meta: formatTime(m.created_at),
        quickReplies: Array.isArray(m.quick_replies) ? m.quick_replies : [],
        files: Array.isArray(m.attachments) ? m.attachments : [],
      });
    }
    for (const m of state.local) {
      if (storedClientIds.has(m.client_id)) continue;
      list.push({ key: 'c:' + m.client_id, sender: 'customer', text: m.text,
        pending: !m.error, error: m.error, meta: m.error ? 'not sent' : 'sending…' });
    }
    for (const u of state.uploads) {
      if (storedClientIds.has(u.client_id)) continue;
      list.push({ key: 'c:' + u.client_id, sender: 'customer', text: u.name, pending: !u.error, error: u.error,
        meta: u.error ? 'not sent' : 'uploading ' + u.progress + '%' });
    }
    // An agent opened the conversation after the customer's latest stored message: "Seen".
    const seenUpTo = state.conversation && typeof state.conversation.seen_up_to === 'number' ? state.conversation.seen_up_to : -1;
    const lastOwn = stored.filter((m) => m.sender === 'customer').pop();
    if (lastOwn && lastOwn.seq <= seenUpTo) {
      const entry = list.find((e) => e.seq === lastOwn.seq);
      if (entry) { entry.meta += ' · Seen'; entry.seen = true; }
    }
    // Who speaks is shown when the speaker changes: an agent's name and initials, the bot's mark.
    list.forEach((entry, i) => {
      const before = list[i - 1];
      const speaks = entry.sender === 'agent' || entry.sender === 'bot';
      entry.showSpeaker = speaks && !(before && before.sender === entry.sender && (before.author || '') === (entry.author || ''));
    });
    return list;
  }

  /** Brings the message list in line with the state, reusing existing rows. */
  function render(forceScroll) {
    const stick = forceScroll || isNearBottom();
    const list = entries();
    const keep = new Set();
    let previous = null;
    list.forEach((entry, index) => {
      let row = rows.get(entry.key);
      if (!row) { row = buildRow(entry); rows.set(entry.key, row); }
      updateRow(row, entry, index === list.length - 1);
      keep.add(entry.key);
      const expected = previous ? previous.nextSibling : ui.messages.firstChild;
      if (row !== expected) ui.messages.insertBefore(row, expected);
      previous = row;
    });
    for (const [key, row] of rows) {
      if (!keep.has(key)) { row.remove(); rows.delete(key); }
    }
    if (stick) scrollToBottom();
    reportSeen();
  }

  /** "Dana Ruiz" → "DR": an agent's avatar. */
  function initials(name) {
    const parts = String(name).trim().split(/\s+/).filter(Boolean);
    return ((parts[0] || '?').charAt(0) + (parts.length > 1 ? parts[parts.length - 1].charAt(0) : '')).toUpperCase();
  }

  /** Who wrote a message, as a screen reader announces it before the text. */
  function senderLabel(entry) {
    if (entry.sender === 'customer') return t('You');
    if (entry.sender === 'agent') return entry.author || t('Agent');
    if (entry.sender === 'system') return 'Notice';
    return look.title + ' bot';
  }

  function buildRow(entry) {
    const row = h('div', { class: 'sb-row sb-row-' + entry.sender });
    row.sbWho = h('span', { class: 'sb-sr', 'data-sb': 'sender-label' });
    row.sbBubble = h('div', { class: 'sb-bubble', 'data-sb': 'message', 'data-sender': entry.sender, dir: 'auto' });
    if (entry.key === WELCOME_KEY) row.sbBubble.setAttribute('data-local', 'welcome');
    row.sbMeta = h('div', { class: 'sb-meta', 'data-sb': 'meta' });
    // Seen, not read out: the screen-reader label above names the speaker already.
    row.sbAvatar = h('span', { class: 'sb-avatar' });
    row.sbName = h('span', { class: 'sb-name' });
    row.sbSpeaker = h('div', { class: 'sb-speaker', 'data-sb': 'speaker', 'aria-hidden': 'true', hidden: '' }, row.sbAvatar, row.sbName);
    row.append(row.sbSpeaker, row.sbWho, row.sbBubble, row.sbMeta);
    return row;
  }

  function updateRow(row, entry, isLast) {
    const bubble = row.sbBubble;
    // The bubble holds only the text; the time or "sending…" goes in the line below it.
    if (bubble.textContent !== entry.text) bubble.textContent = entry.text;
    bubble.classList.toggle('sb-empty', !entry.text);
    if (entry.files && entry.files.length && !row.sbFiles) {
      row.sbFiles = buildFiles(entry.files);
      bubble.after(row.sbFiles);
    }
    const who = senderLabel(entry) + ':';
    if (row.sbWho.textContent !== who) row.sbWho.textContent = who;
    row.sbSpeaker.hidden = !entry.showSpeaker;
    if (entry.showSpeaker) {
      const name = entry.sender === 'agent' ? (entry.author || t('Agent')) : look.title;
      row.sbName.textContent = name;
      if (entry.sender === 'agent') row.sbAvatar.textContent = initials(name);
      else row.sbAvatar.innerHTML = ICON_CHAT.replace('sb-icon-chat', '');
    }
    if (entry.seq != null) bubble.setAttribute('data-seq', String(entry.seq));
    row.sbMeta.textContent = entry.meta;
    row.sbMeta.hidden = !entry.meta;
    if (entry.seen) row.sbMeta.setAttribute('data-seen', '1'); else row.sbMeta.removeAttribute('data-seen');
    bubble.setAttribute('data-state', entry.pending ? 'pending' : entry.error ? 'failed' : 'sent');
    row.classList.toggle('sb-pending', !!entry.pending);
    row.classList.toggle('sb-failed', !!entry.error);
    updateError(row, entry.error);
    updateQuickReplies(row, isLast && entry.sender === 'bot' ? entry.quickReplies || [] : []);
  }

  function updateError(row, error) {
    if (!error) { if (row.sbError) { row.sbError.remove(); row.sbError = null; } return; }
    if (!row.sbError) { row.sbError = h('div', { class: 'sb-error', 'data-sb': 'error', role: 'alert' }); row.append(row.sbError); }
    row.sbError.textContent = error;
  }

  /** Quick replies show only under the latest message, and only while it is the bot's. */
  function updateQuickReplies(row, replies) {
    const signature = JSON.stringify(replies);
    if (row.sbQuickSignature === signature) return;
    row.sbQuickSignature = signature;
    if (row.sbQuick) { row.sbQuick.remove(); row.sbQuick = null; }
    if (!replies.length) return;
    if (replies.join() === '1,2,3,4,5') { row.append(row.sbQuick = stars()); return; }
    row.sbQuick = h('div', { class: 'sb-quick', 'data-sb': 'quick-replies' });
    for (const reply of replies) {
      row.sbQuick.append(h('button', { type: 'button', 'data-sb': 'quick-reply', text: String(reply),
        onclick: () => { send(String(reply)); ui.input.focus(); } }));
    }
    row.append(row.sbQuick);
  }

  /** Shows or hides the visitor's requests (newest first, with where each stands) over the chat. */
  async function toggleRequests() {
    const show = ui.requests.hidden;
    ui.requestsToggle.setAttribute('aria-expanded', String(show));
    ui.scroll.hidden = show;
    if (!show) { ui.requests.hidden = true; ui.requests.replaceChildren(); ui.input.focus(); return; }
    ui.requests.hidden = false;
    ui.requests.replaceChildren(h('p', { class: 'sb-requests-note', text: t('Loading your requests…') }));
    let listed = [];
    try {
      const res = await request('GET', '/webchat/conversations');
      if (!res.ok || !res.data) throw new Error('status ' + res.status);
      listed = Array.isArray(res.data.conversations) ? res.data.conversations : [];
    } catch (_) {
      ui.requests.replaceChildren(h('p', { class: 'sb-requests-note', role: 'alert', text: t('Your requests could not be loaded; try again in a moment.') }));
      return;
    }
    const heading = h('h2', { class: 'sb-requests-title', text: t('Your requests') });
    const items = listed.map((c) => h('li', { class: 'sb-request', 'data-sb': 'request', 'data-state': String(c.state) },
      h('span', { class: 'sb-request-state sb-state-' + String(c.state), text: String(c.state_label) }),
      h('span', { class: 'sb-request-text', text: String(c.text || '') + (c.current ? ' (this chat)' : '') }),
      h('span', { class: 'sb-request-time', text: formatDay(c.updated_at) })));
    ui.requests.replaceChildren(heading, items.length
      ? h('ul', { class: 'sb-request-list' }, ...items)
      : h('p', { class: 'sb-requests-note', text: t('No requests yet.') }));
    ui.requests.focus();
  }

  /** The rating scale as five stars: a click sends the digit, as a typed answer would. */
  function stars() {
    const group = h('div', { class: 'sb-quick sb-stars', 'data-sb': 'rating', role: 'group', 'aria-label': t('Rate the help you got') });
    const buttons = [];
    const light = (n) => buttons.forEach((b, i) => b.classList.toggle('sb-lit', i < n));
    for (let n = 1; n <= 5; n++) {
      const button = h('button', { type: 'button', 'data-sb': 'rating-star', 'aria-label': n + ' of 5 stars', text: '\u2605',
        onclick: () => { send(String(n)); ui.input.focus(); } });
      button.addEventListener('mouseenter', () => light(n));
      button.addEventListener('focus', () => light(n));
      buttons.push(button);
      group.append(button);
    }
    const focusedStar = () => buttons.indexOf(group.getRootNode().activeElement) + 1;
    group.addEventListener('mouseleave', () => light(focusedStar()));
    group.addEventListener('focusout', (event) => { if (!group.contains(event.relatedTarget)) light(0); });
    return group;
  }

  // ---- start --------------------------------------------------------------------------------

  function onOnline() {
    wakeSleepers(); // cut fallback backoffs short
    if (mode === 'http') { tryWebSocketAgain(); return; }
    attempt = 0;
    if (socketReady) ping(); // the old socket may have died with the old network
    else if (!socket) connect();
  }

  function onOffline() {
    if (socket) dropSocket(socket); // reconnects on 'online'
    else setConnection('offline');
  }

  function onVisible() {
    // Mobile browsers kill background sockets; don't wait out a long backoff when the user is back.
    if (document.visibilityState === 'visible' && mode === 'ws' && !socket) { attempt = 0; connect(); }
    reportSeen();
  }

  const publicApi = given;
  publicApi.open = () => setOpen(true, true);
  publicApi.close = () => setOpen(false, false);
  publicApi.toggle = () => setOpen(!state.open, true);
  publicApi.send = (text) => send(text);
  window.SwitchboardWidget = publicApi;

  buildUi();
  applyLook();
  updateStatus();
  setOpen(state.open, false);
  attachUi();
  if (fullScreen && fullScreen.addEventListener) fullScreen.addEventListener('change', updateModal);
  if (!document.body) document.addEventListener('DOMContentLoaded', updateModal);
  window.addEventListener('online', onOnline);
  window.addEventListener('offline', onOffline);
  document.addEventListener('visibilitychange', onVisible);
  loadServerConfig();
  // Hours change with the clock ("tomorrow" becomes "today", the team closes again): ask again now and then.
  setInterval(loadServerConfig, 15 * 60 * 1000);
  connect();
})();
