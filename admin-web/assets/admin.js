// Switchboard admin panel: progressive enhancement only. Every action works without this file.
(function () {
  'use strict';

  var main = document.querySelector('main');

  // ---- The Widget page's preview follows the form as the admin types ----

  var preview = document.querySelector('[data-widget-preview]');
  if (preview) {
    var field = function (key) { return document.querySelector('[name="value:' + key + '"]'); };
    var colour = /^#[0-9a-fA-F]{6}$/;
    var update = function () {
      var read = function (key) { var f = field(key); return f ? f.value.trim() : ''; };
      preview.querySelector('[data-preview="title"]').textContent = read('webchat.title');
      preview.querySelector('[data-preview="welcome"]').textContent = read('webchat.welcome_message');
      if (colour.test(read('webchat.primary_color'))) preview.style.setProperty('--preview-main', read('webchat.primary_color'));
      if (colour.test(read('webchat.text_color'))) preview.style.setProperty('--preview-text', read('webchat.text_color'));
      preview.dataset.position = read('webchat.position') === 'left' ? 'left' : 'right';
    };
    document.addEventListener('input', update);
    update();
  }

  // ---- (a) Canned responses: insert the chosen body into the reply textarea at the cursor ----

  function insertAtCursor(ta, text) {
    var value = ta.value;
    // Only trust the caret if the user has actually been in the field; otherwise append.
    var known = ta.dataset.caretKnown === '1' && typeof ta.selectionStart === 'number';
    var start = known ? ta.selectionStart : value.length;
    var end = known ? ta.selectionEnd : value.length;
    ta.value = value.slice(0, start) + text + value.slice(end);
    var caret = start + text.length;
    ta.focus();
    try { ta.setSelectionRange(caret, caret); } catch (e) { /* ignore */ }
    ta.dataset.caretKnown = '1';
    ta.dispatchEvent(new Event('input', { bubbles: true }));
  }

  document.addEventListener('focusin', function (ev) {
    if (ev.target && ev.target.tagName === 'TEXTAREA') ev.target.dataset.caretKnown = '1';
  });

  // An explicit Insert button: choosing in the menu by keyboard (arrow keys) must not act.
  Array.prototype.forEach.call(document.querySelectorAll('[data-action="insert-canned"]'), function (button) {
    button.hidden = false;
  });
  document.addEventListener('click', function (ev) {
    var button = ev.target && ev.target.closest && ev.target.closest('[data-action="insert-canned"]');
    if (!button) return;
    var sel = button.form && button.form.querySelector('[data-test="canned-select"]');
    if (!sel || !sel.value) { announce('Choose a canned response first.'); if (sel) sel.focus(); return; }
    var ta = replyTextarea(sel);
    if (ta) insertAtCursor(ta, sel.value);
    sel.selectedIndex = 0;
    announce('Canned response inserted.');
  });

  // ---- A reply that was not delivered: its text can be copied to send another way ----
  function showCopyButtons(root) {
    Array.prototype.forEach.call(root.querySelectorAll('[data-action="copy-text"]'), function (button) {
      button.hidden = !(navigator.clipboard && navigator.clipboard.writeText);
    });
  }
  showCopyButtons(document);
  document.addEventListener('click', function (ev) {
    var button = ev.target && ev.target.closest && ev.target.closest('[data-action="copy-text"]');
    if (!button) return;
    var text = button.closest('[data-test="message"]').querySelector('.msg-text').textContent;
    navigator.clipboard.writeText(text).then(function () { announce('Reply text copied.'); },
      function () { announce('Copying failed; select the text and copy it yourself.'); });
  });

  // ---- Announcements and focus after an action (the page was reloaded by the server) ----
  var announcer = document.getElementById('announcer');
  function announce(text) {
    if (!announcer) return;
    announcer.textContent = '';
    // A change after the region exists is what screen readers announce.
    setTimeout(function () { announcer.textContent = text; }, 50);
  }

  var flash = document.querySelector('[data-announce]');
  if (flash) announce(flash.textContent.trim());
  if (main && main.dataset.focus) {
    var target = document.getElementById(main.dataset.focus) || main.querySelector('h1');
    if (target) target.focus({ preventScroll: false });
  }
  // The confirmation is said once; a reload should not say it again.
  if (/[?&]done=/.test(location.search) && window.history && history.replaceState) {
    history.replaceState(null, '', location.pathname);
  }

  // ---- Helpers ----
  function scrollToEnd(el) { el.scrollTop = el.scrollHeight; }
  function nearEnd(el) { return el.scrollHeight - el.scrollTop - el.clientHeight < 80; }

  var messages = document.querySelector('[data-region="messages"]');
  function replyTextarea(select) {
    return (select.form && select.form.querySelector('textarea[name="text"]')) ||
      document.querySelector('[data-test="reply-text"]');
  }
  if (messages) scrollToEnd(messages);

  // Desktop alerts and the tone are the agent's choice, kept in this browser.
  var ALERTS_KEY = 'switchboard.alerts';
  function alertsOn() {
    try { return window.localStorage.getItem(ALERTS_KEY) === 'on'; } catch (e) { return false; }
  }
  function describeAlerts() {
    var state = document.getElementById('alerts-state');
    var button = document.getElementById('enable-alerts');
    if (!state || !button) return;
    var on = alertsOn();
    button.textContent = on ? 'Turn desktop alerts and sound off' : 'Turn desktop alerts and sound on';
    button.setAttribute('aria-pressed', on ? 'true' : 'false');
    var denied = typeof Notification !== 'undefined' && Notification.permission === 'denied';
    state.textContent = on ? (denied ? 'Sound is on; this browser blocks desktop notifications for the panel.' : 'Alerts are on in this browser.') : 'Alerts are off in this browser.';
  }
  describeAlerts();
  // Delegated: a live refresh redraws the button.
  document.addEventListener('click', function (ev) {
    if (!ev.target.closest || !ev.target.closest('#enable-alerts')) return;
    var turnOn = !alertsOn();
    try { window.localStorage.setItem(ALERTS_KEY, turnOn ? 'on' : 'off'); } catch (e) { /* private mode */ }
    if (turnOn && typeof Notification !== 'undefined' && Notification.permission === 'default') {
      Notification.requestPermission().then(describeAlerts, describeAlerts);
    }
    describeAlerts();
  });
  function beep() {
    var Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return;
    try {
      var ctx = new Context();
      var tone = ctx.createOscillator();
      var gain = ctx.createGain();
      tone.frequency.value = 880;
      gain.gain.value = 0.08;
      tone.connect(gain);
      gain.connect(ctx.destination);
      tone.start();
      tone.stop(ctx.currentTime + 0.15);
      tone.onended = function () { ctx.close(); };
    } catch (e) { /* no audio here */ }
  }

  if (!main || typeof EventSource === 'undefined' || typeof fetch === 'undefined') return;

  function fetchDoc() {
    return fetch(location.href, {
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { 'Accept': 'text/html', 'X-Requested-With': 'live-refresh' }
    }).then(function (res) {
      if (!res.ok) throw new Error('HTTP ' + res.status);
      return res.text();
    }).then(function (html) {
      return new DOMParser().parseFromString(html, 'text/html');
    });
  }

  function markRefreshed() {
    describeAlerts();
    document.body.dataset.liveRefreshes = String((Number(document.body.dataset.liveRefreshes) || 0) + 1);
  }

  // Runs fn at most once per `ms` burst; never overlaps itself, and re-runs if asked again meanwhile.
  function debounced(fn, ms) {
    var timer = null, running = false, again = false;
    function run() {
      timer = null;
      if (running) { again = true; return; }
      running = true;
      Promise.resolve().then(fn).catch(function () { /* try again on the next event */ }).then(function () {
        running = false;
        if (again) { again = false; trigger(); }
      });
    }
    function trigger() {
      if (timer) clearTimeout(timer);
      timer = setTimeout(run, ms);
    }
    return trigger;
  }

  // ---- (b) Live updates ----
  /** Brings the message log in line with `next` message by message, so a screen reader hears
   *  only what was added, and focus inside the log survives. */
  function mergeMessages(cur, next) {
    var stick = nearEnd(cur);
    var existing = {};
    Array.prototype.forEach.call(cur.querySelectorAll('[data-key]'), function (el) { existing[el.dataset.key] = el; });
    var incoming = next.querySelectorAll('[data-key]');
    if (!incoming.length) { if (cur.innerHTML !== next.innerHTML) cur.innerHTML = next.innerHTML; return; }
    var empty = cur.querySelector('.empty');
    if (empty) empty.remove();
    var previous = null;
    Array.prototype.forEach.call(incoming, function (el) {
      var key = el.dataset.key;
      var have = existing[key];
      delete existing[key];
      if (have && have.outerHTML !== el.outerHTML) {
        var copy = document.importNode(el, true);
        have.replaceWith(copy);
        have = copy;
      }
      if (!have) have = document.importNode(el, true);
      var expected = previous ? previous.nextElementSibling : cur.firstElementChild;
      if (have !== expected) cur.insertBefore(have, expected);
      previous = have;
    });
    Object.keys(existing).forEach(function (key) { existing[key].remove(); });
    if (stick) scrollToEnd(cur);
  }

  function refreshConversation() {
    return fetchDoc().then(function (doc) {
      var state = document.querySelector('[data-region="state"]');
      var nextState = doc.querySelector('[data-region="state"]');
      if (state && nextState && state.innerHTML !== nextState.innerHTML) state.innerHTML = nextState.innerHTML;
      var log = document.querySelector('[data-region="messages"]');
      var nextLog = doc.querySelector('[data-region="messages"]');
      if (nextLog) showCopyButtons(nextLog); // so unchanged messages compare equal and stay
      if (log && nextLog) mergeMessages(log, nextLog);
      // Keep the optimistic-lock version of the small forms current (typed text is untouched).
      var v = doc.querySelector('input[name="version"]');
      if (v) {
        Array.prototype.forEach.call(document.querySelectorAll('input[name="version"]'), function (input) {
          input.value = v.value;
        });
      }
      markRefreshed();
    });
  }

  function textFieldFocused() {
    var a = document.activeElement;
    if (!a || !main.contains(a)) return false;
    if (a.tagName === 'TEXTAREA' || a.isContentEditable) return true;
    if (a.tagName !== 'INPUT') return false;
    var type = (a.getAttribute('type') || 'text').toLowerCase();
    return ['text', 'search', 'email', 'number', 'password', 'url', 'tel'].indexOf(type) !== -1;
  }

  /** How to find the focused element again after the page part around it is redrawn. */
  function keyOf(el) {
    if (!el || el === document.body || !main.contains(el)) return null;
    if (el.id) return '#' + CSS.escape(el.id);
    if (el.dataset && el.dataset.id) return '[data-id="' + CSS.escape(el.dataset.id) + '"]';
    var href = el.getAttribute && el.getAttribute('href');
    if (href) return '[href="' + CSS.escape(href) + '"]';
    if (el.name) return '[name="' + CSS.escape(el.name) + '"]';
    return null;
  }

  function restoreFocus(key) {
    if (!key) return;
    var again = main.querySelector(key);
    if (again) again.focus({ preventScroll: true });
    else { main.setAttribute('tabindex', '-1'); main.focus({ preventScroll: true }); }
  }

  function refreshMain() {
    if (textFieldFocused()) return Promise.resolve();
    return fetchDoc().then(function (doc) {
      var next = doc.querySelector('main');
      if (!next || next.getAttribute('data-live') !== main.getAttribute('data-live')) return;
      if (textFieldFocused()) return; // the user started typing while we were fetching
      var focusKey = keyOf(document.activeElement);
      main.innerHTML = next.innerHTML;
      restoreFocus(focusKey);
      markRefreshed();
    });
  }

  var conversationRefresh = debounced(refreshConversation, 150);
  var listRefresh = debounced(refreshMain, 250);

  function refreshCurrentPage() {
    var mode = main.getAttribute('data-live');
    if (mode === 'conversation') conversationRefresh();
    else if (mode === 'list' || mode === 'dashboard' || mode === 'notifications') listRefresh();
  }

  /** Tells the agent who wrote a reply (on whatever page they are) that it was not delivered. */
  function noticeFailedReply(data) {
    var me = document.body.dataset.agentId;
    if (typeof data.failed_reply_of !== 'string' || data.failed_reply_of !== me) return;
    var box = document.getElementById('live-notices');
    if (!box) return;
    var notice = document.createElement('div');
    notice.className = 'flash flash-error';
    notice.setAttribute('data-test', 'failed-notice');
    notice.append('A reply you wrote was not delivered. ');
    var link = document.createElement('a');
    link.href = '/panel/conversations/' + encodeURIComponent(data.conversation_id);
    link.textContent = 'Open the conversation';
    notice.append(link);
    box.append(notice);
    announce('A reply you wrote was not delivered.');
  }

  /** A notification for this agent: the badge, a notice on the page, and (when the agent
   * turned them on) a desktop notification and a short tone. */
  function showNotification(data) {
    // The conversation on screen reads its own news (its refresh marks them read).
    if (main.getAttribute('data-live') === 'conversation' && data.conversation_id === main.getAttribute('data-conversation-id')) return;
    var badge = document.getElementById('unread-badge');
    if (badge) {
      var count = (parseInt(badge.firstChild && badge.firstChild.nodeValue, 10) || 0) + 1;
      badge.firstChild.nodeValue = String(count);
      badge.hidden = false;
    }
    var box = document.getElementById('live-notices');
    if (box) {
      var notice = document.createElement('div');
      notice.className = 'flash flash-info';
      notice.setAttribute('data-test', 'notification-notice');
      if (data.conversation_id) {
        var link = document.createElement('a');
        link.href = '/panel/conversations/' + encodeURIComponent(data.conversation_id);
        link.textContent = data.text;
        notice.append(link);
      } else {
        notice.append(data.text);
      }
      box.append(notice);
    }
    announce(data.text);
    if (alertsOn() && typeof Notification !== 'undefined' && Notification.permission === 'granted') {
      try { new Notification('Switchboard', { body: data.text, tag: 'switchboard-' + (data.conversation_id || data.at) }); } catch (e) { /* not allowed here */ }
    }
    if (alertsOn()) beep();
  }

  /** "Ann is typing…" under the conversation the customer is typing in, for a few seconds. */
  var typingTimer = 0;
  function showCustomerTyping(data) {
    var cue = document.querySelector('[data-test="customer-typing"]');
    if (!cue || String(data.conversation_id) !== main.getAttribute('data-conversation-id')) return;
    cue.hidden = false;
    clearTimeout(typingTimer);
    typingTimer = setTimeout(function () { cue.hidden = true; }, 6000);
  }

  /** While the agent writes a reply, the customer's chat says so (at most every 3 s). */
  (function () {
    var form = document.querySelector('.reply-form');
    var text = form && form.querySelector('[data-test="reply-text"]');
    var csrf = form && form.querySelector('input[name="csrf"]');
    if (!text || !csrf || typeof fetch === 'undefined') return;
    var last = 0;
    text.addEventListener('input', function () {
      var now = Date.now();
      if (!text.value.trim() || now - last < 3000) return;
      last = now;
      fetch(form.getAttribute('action').replace(/\/reply$/, '/typing'), {
        method: 'POST', credentials: 'same-origin',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: 'csrf=' + encodeURIComponent(csrf.value),
      }).catch(function () { /* only a cue */ });
    });
  })();

  /** An agent's presence as it changes, on the agents page (quietly: no announcement). */
  function showPresence(data) {
    var row = document.querySelector('[data-test="agent-row"][data-id="' + String(data.agent_id).replace(/[^0-9a-f-]/g, '') + '"]');
    var cell = row && row.querySelector('[data-test="agent-presence"]');
    if (!cell || !/^(online|away|offline)$/.test(String(data.presence))) return;
    var dot = cell.querySelector('.presence-dot');
    if (dot) dot.className = 'presence-dot presence-' + data.presence;
    var text = cell.querySelector('[data-presence-text]');
    if (text) text.textContent = data.presence;
  }

  function onEvent(ev) {
    var data;
    try { data = JSON.parse(ev.data); } catch (e) { return; }
    if (!data || typeof data !== 'object') return;
    if (data.kind === 'notification') {
      showNotification(data);
      if (main.getAttribute('data-live') === 'notifications') listRefresh();
      return;
    }
    if (data.kind === 'typing') { showCustomerTyping(data); return; }
    if (data.kind === 'presence') { showPresence(data); return; }
    noticeFailedReply(data);
    var mode = main.getAttribute('data-live');
    if (mode === 'conversation') {
      if (String(data.conversation_id) === main.getAttribute('data-conversation-id')) conversationRefresh();
    } else if (mode === 'list' || mode === 'dashboard') {
      listRefresh();
    }
  }

  var events = new EventSource('/panel/events');
  var hadError = false;
  var opened = false;
  events.addEventListener('open', function () {
    // Whatever happened between rendering this page and listening (or while reconnecting) was
    // missed: catch up once.
    if (opened || hadError) refreshCurrentPage();
    else { opened = true; catchUpOnce(); }
    hadError = false;
  });

  /** The first time the stream opens: refresh once, then say the page is live. */
  function catchUpOnce() {
    var mode = main.getAttribute('data-live');
    var refresh = mode === 'conversation' ? refreshConversation : (mode === 'list' || mode === 'dashboard' || mode === 'notifications') ? refreshMain : null;
    var done = function () { document.body.dataset.liveReady = '1'; };
    if (!refresh) { done(); return; }
    Promise.resolve().then(refresh).catch(function () {}).then(done);
  }
  events.addEventListener('error', function () { hadError = true; });
  events.addEventListener('message', onEvent);
  events.addEventListener('conversation', onEvent); // in case the server names its events
})();
