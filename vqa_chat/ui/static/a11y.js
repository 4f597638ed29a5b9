// The chat page's accessibility script, inlined by vqa_chat/a11y.py (launch(head=...)).
// The KEYS and SHORTCUTS placeholders are filled in from a11y.SHORTCUTS.
(() => {
  const KEYS = %KEYS%;
  const byId = (id) => document.getElementById(id);
  const click = (id) => { const el = byId(id); const b = el && (el.tagName === 'BUTTON' ? el : el.querySelector('button')); if (b && !b.disabled) b.click(); };
  window.vqaLive = () => {
    let live = byId('vqa-live');
    if (!live) {
      live = document.createElement('div');
      live.id = 'vqa-live'; live.className = 'sr-only';
      live.setAttribute('role', 'status'); live.setAttribute('aria-live', 'polite'); live.setAttribute('aria-atomic', 'true');
      document.body.appendChild(live);
    }
    return live;
  };
  window.vqaAnnounce = (text) => {
    if (!text) return;
    const live = window.vqaLive();
    live.textContent = '';
    setTimeout(() => { live.textContent = text; }, 60);  // same text twice is still announced
  };
  window.vqaFocusQuestion = () => {
    const box = document.querySelector('#question textarea, #question input');
    if (box) box.focus();
  };
  window.vqaSpeak = (text) => {
    if (!('speechSynthesis' in window)) { window.vqaAnnounce('Read aloud is not available in this browser.'); return; }
    window.speechSynthesis.cancel();
    if (!text) { window.vqaAnnounce('There is no answer to read yet.'); return; }
    window.speechSynthesis.speak(new SpeechSynthesisUtterance(text));
  };
  window.vqaContrastSaved = () => {
    try { return localStorage.getItem('vqa-hc') === '1'; } catch (e) { return false; }
  };
  window.vqaContrast = (on) => {
    document.body.classList.toggle('vqa-hc', !!on);
    try { localStorage.setItem('vqa-hc', on ? '1' : '0'); } catch (e) {}
  };
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && e.target.matches?.('#image-input button.upload-container')) {
      const input = document.querySelector('#image-input input[type=file]');  // Enter opens the file
      if (input) { e.preventDefault(); input.value = ''; input.click(); } return;  // chooser, like Space
    }
    if (e.key === 'Escape' && !e.altKey && !e.ctrlKey) { click('stop-btn'); if ('speechSynthesis' in window) window.speechSynthesis.cancel(); return; }
    if (!(e.altKey && e.shiftKey) || e.ctrlKey || e.metaKey) return;
    if (e.code === 'KeyQ') { e.preventDefault(); window.vqaFocusQuestion(); return; }
    if (e.code === 'KeyI') { e.preventDefault(); const up = document.querySelector('#image-input button, #image-input input'); if (up) up.focus(); return; }
    const id = KEYS[e.code];
    if (id) { e.preventDefault(); click(id); }
  }, true);
  // Once the page is built (and again whenever Gradio re-renders): aria-keyshortcuts on the buttons, our
  // live region, the saved contrast choice, and a chat log that does NOT announce each streamed token
  // (Gradio's chat is role="log", which is polite by default): we announce whole sentences ourselves.
  const setup = () => {
    for (const [keys, id] of %SHORTCUTS%) {
      const el = byId(id); const b = el && (el.tagName === 'BUTTON' ? el : el.querySelector('button'));
      if (b && b.getAttribute('aria-keyshortcuts') !== keys) b.setAttribute('aria-keyshortcuts', keys);
    }
    window.vqaLive();
    for (const b of document.querySelectorAll('#image-input button.upload-container')) {  // name = visible words
      const words = b.innerText.replace(/\s+/g, ' ').trim();
      if (words && b.getAttribute('aria-label') !== 'Image: ' + words) b.setAttribute('aria-label', 'Image: ' + words);
    }
    for (const b of document.querySelectorAll('#chat button:not([aria-label])')) {  // pictures in the chat
      const img = b.querySelector('img');  // (may not be there yet while the picture loads)
      if (!b.textContent.trim()) b.setAttribute('aria-label', 'Enlarge picture: ' + (img?.alt || 'image'));
    }
    for (const log of document.querySelectorAll('#chat [role="log"], #chat [aria-live]')) {
      if (log.getAttribute('aria-live') !== 'off') log.setAttribute('aria-live', 'off');
    }
    if (!setup.contrastDone && document.body) {
      setup.contrastDone = true;
      if (window.vqaContrastSaved()) document.body.classList.add('vqa-hc');
    }
  };
  let queued = false;  // also right after Gradio changes the page, not only every 500 ms
  const soon = () => { if (!queued) { queued = true; requestAnimationFrame(() => { queued = false; setup(); }); } };
  const start = () => {
    setup(); setInterval(setup, 500);
    new MutationObserver(soon).observe(document.body, {childList: true, subtree: true});
  };
  if (document.body) start(); else document.addEventListener('DOMContentLoaded', start);
})();
