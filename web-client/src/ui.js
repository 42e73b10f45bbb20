// DOM rendering: views, the toast, the share box and the participant list.
// Holds no protocol or media state; app.js owns that and calls in here.

const $ = (id) => document.getElementById(id);

// The server lists room noise too (levels around 0.004 for a quiet mic); below about
// -40 dBFS nobody reads it as talking, so the indicator ignores it.
const SPEAKING_FLOOR = 0.01;

export const el = {
  landing: $('view-landing'),
  room: $('view-room'),
  createForm: $('create-form'),
  createName: $('create-name'),
  createTitle: $('create-title'),
  createBtn: $('create-btn'),
  roomTitle: $('room-title'),
  roomNote: $('room-note'),
  shareLink: $('share-link'),
  copyBtn: $('copy-btn'),
  shareBtn: $('share-btn'),
  joinForm: $('join-form'),
  joinName: $('join-name'),
  joinBtn: $('join-btn'),
  leftNote: $('left-note'),
  inRoom: $('in-room'),
  roomStatus: $('room-status'),
  participants: $('participants'),
  muteBtn: $('mute-btn'),
  leaveBtn: $('leave-btn'),
  netStatus: $('net-status'),
  toast: $('toast'),
  toastText: $('toast-text'),
  toastClose: $('toast-close'),
  audioSink: $('audio-sink'),
  announcer: $('announcer'),
};

el.toastClose.addEventListener('click', hideToast);

export function showView(name) {
  el.landing.hidden = name !== 'landing';
  el.room.hidden = name !== 'room';
}

/** Tell the user something went wrong (kind 'error') or just happened (kind 'info'). */
export function showToast(text, { kind = 'error', code = '' } = {}) {
  el.toast.dataset.kind = kind;
  el.toast.dataset.code = code;
  el.toastText.textContent = text;
  el.toast.hidden = false;
}

export function hideToast() {
  el.toast.hidden = true;
  el.toastText.textContent = '';
  el.toast.dataset.code = '';
}

/** Say something to screen-reader users without moving focus. */
export function announce(text) {
  el.announcer.textContent = text;
}

export function setNetStatus(text, state) {
  el.netStatus.textContent = text;
  el.netStatus.dataset.state = state || '';
}

export function setBusy(button, busy, busyLabel) {
  if (busy) {
    button.dataset.label = button.textContent;
    button.textContent = busyLabel;
  } else if (button.dataset.label) {
    button.textContent = button.dataset.label;
  }
  button.disabled = busy;
  button.setAttribute('aria-busy', String(busy));
}

/** Which part of the room page shows: the join form, or the in-room controls. */
export function showRoomPhase(phase, note = '') {
  const inside = phase === 'in';
  el.inRoom.hidden = !inside;
  el.joinForm.hidden = inside;
  el.leftNote.hidden = !note;
  el.leftNote.textContent = note;
  el.joinBtn.textContent = phase === 'left' ? 'Rejoin' : 'Join';
  if (!inside) {
    el.participants.replaceChildren();
    el.roomStatus.textContent = '';
  }
}

export function setMuteButton(muted) {
  el.muteBtn.textContent = muted ? 'Unmute' : 'Mute';
  el.muteBtn.setAttribute('aria-pressed', String(muted));
  el.muteBtn.classList.toggle('is-muted', muted);
}

/**
 * Draw the participant list. `people` is [{id, name, muted, connected}], `you` our id,
 * `levels` a Map id -> current speaking level (0..1) for those audible now.
 */
export function renderParticipants(people, you, levels) {
  const sorted = [...people].sort((a, b) => {
    if (a.id === you) return -1;
    if (b.id === you) return 1;
    return a.name.localeCompare(b.name);
  });
  const items = sorted.map((p) => {
    const li = document.createElement('li');
    li.className = 'person';
    li.dataset.id = p.id;
    const level = levels.get(p.id) || 0;
    const speaking = level >= SPEAKING_FLOOR && !p.muted;
    li.classList.toggle('speaking', speaking);
    li.classList.toggle('muted', Boolean(p.muted));
    li.style.setProperty('--level', speaking ? String(Math.min(1, 0.4 + 3 * level)) : '0');

    const avatar = document.createElement('span');
    avatar.className = 'avatar';
    avatar.setAttribute('aria-hidden', 'true');
    avatar.textContent = initials(p.name);

    const name = document.createElement('span');
    name.className = 'name';
    const label = document.createElement('span');
    label.className = 'label';
    label.textContent = p.name;
    name.append(label);
    if (p.id === you) {
      const tag = document.createElement('span');
      tag.className = 'you';
      tag.textContent = 'you';
      name.append(tag);
    }

    const state = document.createElement('span');
    state.className = 'state';
    const listening = p.speaker === false;
    state.textContent = !p.connected ? 'connecting…' : speaking ? 'speaking' : listening ? 'listening' : 'connected';
    state.dataset.state = p.connected ? 'connected' : 'connecting';

    li.append(avatar, name, state);
    if (p.muted) {
      const icon = document.createElement('span');
      icon.className = 'mic-off';
      icon.setAttribute('role', 'img');
      icon.setAttribute('aria-label', 'muted');
      icon.title = 'muted';
      icon.innerHTML = MIC_OFF_SVG;
      li.append(icon);
    }
    return li;
  });
  el.participants.replaceChildren(...items);
}

function initials(name) {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  const letters = parts.slice(0, 2).map((w) => [...w][0] || '');
  return letters.join('').toUpperCase() || '?';
}

const MIC_OFF_SVG = '<svg viewBox="0 0 24 24" width="20" height="20" aria-hidden="true" focusable="false">'
  + '<path fill="currentColor" d="M19 11h-1.7c0 .74-.16 1.43-.43 2.05l1.23 1.23c.56-.98.9-2.09.9-3.28zm-4.02.17'
  + 'c0-.06.02-.11.02-.17V5c0-1.66-1.34-3-3-3S9 3.34 9 5v.18l5.98 5.99zM4.27 3 3 4.27l6.01 6.01V11c0 1.66 1.33 3 '
  + '2.99 3 .22 0 .44-.03.65-.08l1.66 1.66c-.71.33-1.5.52-2.31.52-2.76 0-5.3-2.1-5.3-5.1H5c0 3.41 2.72 6.23 6 '
  + '6.72V21h2v-3.28c.91-.13 1.77-.45 2.54-.9L19.73 21 21 19.73 4.27 3z"/></svg>';
