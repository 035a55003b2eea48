// Switchboard admin panel: progressive enhancement only. Every action works without this file.
(function () {
  'use strict';

  var main = document.querySelector('main');

  // ---- (a) Canned responses: insert the chosen body into the reply textarea at the cursor ----
  function replyTextarea(select) {
    return (select.form && select.form.querySelector('textarea[name="text"]')) ||
      document.querySelector('[data-test="reply-text"]');
  }

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

  document.addEventListener('change', function (ev) {
    var sel = ev.target;
    if (!sel || !sel.matches || !sel.matches('[data-test="canned-select"]') || !sel.value) return;
    var ta = replyTextarea(sel);
    if (ta) insertAtCursor(ta, sel.value);
    sel.selectedIndex = 0;
  });

  // ---- Helpers ----
  function scrollToEnd(el) { el.scrollTop = el.scrollHeight; }
  function nearEnd(el) { return el.scrollHeight - el.scrollTop - el.clientHeight < 80; }

  var messages = document.querySelector('[data-region="messages"]');
  if (messages) scrollToEnd(messages);

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
  function refreshConversation() {
    return fetchDoc().then(function (doc) {
      ['state', 'messages'].forEach(function (name) {
        var sel = '[data-region="' + name + '"]';
        var cur = document.querySelector(sel);
        var next = doc.querySelector(sel);
        if (!cur || !next) return;
        var stick = name === 'messages' && nearEnd(cur);
        cur.innerHTML = next.innerHTML;
        if (stick) scrollToEnd(cur);
      });
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

  function refreshMain() {
    if (textFieldFocused()) return Promise.resolve();
    return fetchDoc().then(function (doc) {
      var next = doc.querySelector('main');
      if (!next || next.getAttribute('data-live') !== main.getAttribute('data-live')) return;
      if (textFieldFocused()) return; // the user started typing while we were fetching
      main.innerHTML = next.innerHTML;
      markRefreshed();
    });
  }

  var conversationRefresh = debounced(refreshConversation, 150);
  var listRefresh = debounced(refreshMain, 250);

  function refreshCurrentPage() {
    var mode = main.getAttribute('data-live');
    if (mode === 'conversation') conversationRefresh();
    else if (mode === 'list' || mode === 'dashboard') listRefresh();
  }

  function onEvent(ev) {
    var data;
    try { data = JSON.parse(ev.data); } catch (e) { return; }
    if (!data || typeof data !== 'object') return;
    var mode = main.getAttribute('data-live');
    if (mode === 'conversation') {
      if (String(data.conversation_id) === main.getAttribute('data-conversation-id')) conversationRefresh();
    } else if (mode === 'list' || mode === 'dashboard') {
      listRefresh();
    }
  }

  var events = new EventSource('/panel/events');
  var hadError = false;
  events.addEventListener('open', function () {
    document.body.dataset.liveReady = '1';
    // After a reconnect we may have missed events: catch up once.
    if (hadError) { hadError = false; refreshCurrentPage(); }
  });
  events.addEventListener('error', function () { hadError = true; });
  events.addEventListener('message', onEvent);
  events.addEventListener('conversation', onEvent); // in case the server names its events
})();
