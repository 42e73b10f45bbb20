// DOM rendering: views, the toast, the share box, the stage (seats) and the audience,
// the moderator's action sheet and confirmations. Holds no protocol or media state:
// app.js owns that and calls in here.

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
  createCapacity: $('create-capacity'),
  createSeats: $('create-seats'),
  createBtn: $('create-btn'),
  roomTitle: $('room-title'),
  roomState: $('room-state'),
  roomNote: $('room-note'),
  share: $('share'),
  shareLink: $('share-link'),
  copyBtn: $('copy-btn'),
  shareBtn: $('share-btn'),
  final: $('final'),
  finalText: $('final-text'),
  joinForm: $('join-form'),
  joinName: $('join-name'),
  joinBtn: $('join-btn'),
  leftNote: $('left-note'),
  inRoom: $('in-room'),
  roomStatus: $('room-status'),
  stageList: $('stage-list'),
  stageCount: $('stage-count'),
  audienceList: $('audience-list'),
  audienceCount: $('audience-count'),
  audienceEmpty: $('audience-empty'),
  meStatus: $('me-status'),
  muteBtn: $('mute-btn'),
  handBtn: $('hand-btn'),
  seatLeaveBtn: $('seat-leave-btn'),
  leaveBtn: $('leave-btn'),
  endBtn: $('end-btn'),
  leaveGroupBtn: $('leave-group-btn'),
  sheet: $('sheet'),
  sheetTitle: $('sheet-title'),
  sheetSub: $('sheet-sub'),
  confirm: $('confirm'),
  confirmText: $('confirm-text'),
  confirmYes: $('confirm-yes'),
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

/**
 * Which part of the room page shows: 'out' (join form), 'in' (the room), 'left' (join
 * form again with a note), or 'final' (the room is over for us: no way back in).
 */
export function showRoomPhase(phase, note = '') {
  const inside = phase === 'in';
  el.inRoom.hidden = !inside;
  el.joinForm.hidden = inside || phase === 'final';
  el.final.hidden = phase !== 'final';
  el.final.dataset.reason = phase === 'final' ? note.reason || '' : '';
  el.finalText.textContent = phase === 'final' ? note.text || '' : '';
  const leftNote = phase === 'left' ? note : '';
  el.leftNote.hidden = !leftNote;
  el.leftNote.textContent = leftNote;
  el.joinBtn.textContent = phase === 'left' ? 'Rejoin' : 'Join';
  if (!inside) {
    el.stageList.replaceChildren();
    el.audienceList.replaceChildren();
    el.roomStatus.textContent = '';
    el.meStatus.textContent = '';
  }
}

const STATE_WORDS = { pending: 'Starting…', active: 'Live', ended: 'Ended' };

/** The room's title, life state badge and share box (the link works once it is active). */
export function renderRoomHead(room) {
  el.roomTitle.textContent = room.name;
  document.title = `${room.name} · Chorus`;
  el.roomState.hidden = false;
  el.roomState.dataset.state = room.state;
  el.roomState.textContent = STATE_WORDS[room.state] || room.state;
  el.shareLink.value = new URL(room.link, window.location.origin).href;
  el.share.hidden = room.state !== 'active';
}

/**
 * The controls of this participant. `me` is our ParticipantInfo, `room` the RoomInfo,
 * `selfMuted` our own mute, `freeSeats` how many seats look free.
 */
export function renderControls({ me, room, selfMuted, freeSeats }) {
  if (!me) {
    return;
  }
  const speaker = me.speaker;
  el.muteBtn.hidden = !speaker;
  el.muteBtn.textContent = selfMuted ? 'Unmute' : 'Mute';
  el.muteBtn.setAttribute('aria-pressed', String(selfMuted));
  el.muteBtn.classList.toggle('is-muted', selfMuted);
  el.seatLeaveBtn.hidden = !speaker;
  el.handBtn.hidden = speaker;
  let hand = 'raise';
  if (me.hand_raised) {
    hand = 'lower';
  } else if (room.seat_mode === 'open' && freeSeats > 0) {
    hand = 'take';
  }
  el.handBtn.dataset.action = hand;
  el.handBtn.textContent = { raise: 'Raise hand', lower: 'Lower hand', take: 'Take a seat' }[hand];
  el.handBtn.classList.toggle('btn-primary', hand !== 'lower');
  el.endBtn.hidden = !(me.role === 'owner' || me.role === 'moderator');
  // The owner cannot leave its group chat (it ends the room instead).
  el.leaveGroupBtn.hidden = me.role === 'owner';

  let words;
  if (me.muted_by_moderator) {
    words = 'A moderator muted you: nobody hears you until they unmute you.';
  } else if (speaker) {
    words = selfMuted ? 'You are on stage, muted.' : 'You are on stage: everyone hears you.';
  } else if (me.hand_raised) {
    words = 'Hand raised: a moderator can invite you to speak.';
  } else {
    words = 'You are listening. Nobody hears your microphone.';
  }
  el.meStatus.textContent = words;
  el.meStatus.dataset.state = me.muted_by_moderator ? 'muted_by_moderator' : speaker ? 'speaker' : 'listener';
}

const ROLE_ORDER = { owner: 0, moderator: 1, member: 2 };

/**
 * Draw the stage (speakers, then free seats up to room.seats) and the audience (raised
 * hands first). `levels` maps id -> current speaking level (0..1); `canModerate` adds an
 * actions button on everyone else, calling `onActions(participant)`.
 */
export function renderPeople({ people, you, levels, room, canModerate, onActions }) {
  const byName = (a, b) => a.name.localeCompare(b.name);
  const speakers = people.filter((p) => p.speaker)
    .sort((a, b) => (ROLE_ORDER[a.role] - ROLE_ORDER[b.role]) || byName(a, b));
  const listeners = people.filter((p) => !p.speaker).sort((a, b) => {
    if (a.id === you) return -1;
    if (b.id === you) return 1;
    return (Number(b.hand_raised) - Number(a.hand_raised)) || byName(a, b);
  });
  const item = (p) => personItem(p, { you, level: levels.get(p.id) || 0, canModerate, onActions });

  const seats = speakers.map(item);
  const free = Math.max(0, room.seats - speakers.length);
  for (let i = 0; i < free; i += 1) {
    const li = document.createElement('li');
    li.className = 'seat-free';
    li.innerHTML = '<span class="avatar" aria-hidden="true">+</span><span class="name"><span class="label">Free seat</span></span>';
    seats.push(li);
  }
  el.stageList.replaceChildren(...seats);
  el.stageCount.textContent = `${speakers.length}/${room.seats}`;
  el.audienceList.replaceChildren(...listeners.map(item));
  el.audienceCount.textContent = listeners.length ? String(listeners.length) : '';
  el.audienceEmpty.hidden = listeners.length > 0;
}

function personItem(p, { you, level, canModerate, onActions }) {
  const li = document.createElement('li');
  li.className = 'person';
  li.dataset.id = p.id;
  li.dataset.name = p.name;
  li.dataset.role = p.role;
  const speaking = p.speaker && level >= SPEAKING_FLOOR && !p.muted && !p.muted_by_moderator;
  li.classList.toggle('speaking', speaking);
  li.classList.toggle('muted', Boolean(p.muted || p.muted_by_moderator));
  li.classList.toggle('hand', Boolean(p.hand_raised));
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

  const tags = document.createElement('span');
  tags.className = 'tags';
  if (p.id === you) {
    tags.append(tag('you', 'you'));
  }
  if (p.role === 'owner') {
    tags.append(tag('role', 'owner'));
  } else if (p.role === 'moderator') {
    tags.append(tag('role', 'moderator'));
  }
  if (p.hand_raised) {
    tags.append(tag('hand-tag', 'hand raised'));
  }
  if (p.muted_by_moderator) {
    tags.append(tag('mod-muted-tag', 'muted by moderator'));
  }
  if (!p.connected) {
    tags.append(tag('state', 'connecting…'));
  } else if (speaking) {
    tags.append(tag('state speaking-tag', 'speaking'));
  }
  li.append(avatar, name, tags);

  const icons = document.createElement('span');
  icons.className = 'icons';
  if (p.hand_raised) {
    icons.append(icon('hand-icon', 'hand raised', HAND_SVG, true));
  }
  if (p.muted_by_moderator) {
    icons.append(icon('mod-muted', 'muted by moderator', MIC_OFF_SVG, true));
  } else if (p.muted && p.speaker) {
    icons.append(icon('mic-off', 'muted', MIC_OFF_SVG, true));
  }
  if (icons.childNodes.length) {
    li.append(icons);
  }

  if (canModerate && p.id !== you) {
    const menu = document.createElement('button');
    menu.type = 'button';
    menu.className = 'person-menu btn-quiet';
    menu.setAttribute('aria-label', `Actions for ${p.name}`);
    menu.setAttribute('aria-haspopup', 'dialog');
    menu.textContent = '⋯';
    menu.addEventListener('click', () => onActions(p));
    li.append(menu);
  }
  return li;
}

function tag(cls, text) {
  const t = document.createElement('span');
  t.className = `tag ${cls}`;
  t.textContent = text;
  return t;
}

function icon(cls, label, content, svg = false) {
  const i = document.createElement('span');
  i.className = `icon ${cls}`;
  i.setAttribute('role', 'img');
  i.setAttribute('aria-label', label);
  i.title = label;
  if (svg) {
    i.innerHTML = content;
  } else {
    i.textContent = content;
  }
  return i;
}

/**
 * Open the moderator's sheet for `p`, showing only the actions that apply. `myRole` is
 * our role; actions are buttons with data-act, handled by app.js.
 */
export function openSheet(p, myRole) {
  const owner = myRole === 'owner';
  const targetOwner = p.role === 'owner';
  const show = {
    grant_seat: !p.speaker,
    revoke_seat: p.speaker && !targetOwner,
    mute: !targetOwner && p.speaker && !p.muted_by_moderator,
    unmute: p.muted_by_moderator,
    make_moderator: owner && p.role === 'member',
    unmake_moderator: owner && p.role === 'moderator',
    remove: !targetOwner && (owner || p.role === 'member'),
  };
  el.sheet.dataset.id = p.id;
  el.sheetTitle.textContent = p.name;
  const where = p.speaker ? 'On stage' : p.hand_raised ? 'In the audience, hand raised' : 'In the audience';
  el.sheetSub.textContent = p.role === 'member' ? where : `${where} · ${p.role}`;
  for (const b of el.sheet.querySelectorAll('.sheet-act')) {
    b.hidden = !show[b.dataset.act];
  }
  if (!el.sheet.open) {
    el.sheet.showModal();
  }
}

export function closeSheet() {
  if (el.sheet.open) {
    el.sheet.close();
  }
}

/** Ask before something that cannot be undone; resolves true when confirmed. */
export function confirmAction(text, yesLabel) {
  el.confirmText.textContent = text;
  el.confirmYes.textContent = yesLabel;
  el.confirm.returnValue = '';
  return new Promise((resolve) => {
    el.confirm.addEventListener('close', () => resolve(el.confirm.returnValue === 'yes'), { once: true });
    el.confirm.showModal();
  });
}

function initials(name) {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  const letters = parts.slice(0, 2).map((w) => [...w][0] || '');
  return letters.join('').toUpperCase() || '?';
}

const MIC_OFF_SVG = '<svg viewBox="0 0 24 24" width="18" height="18" aria-hidden="true" focusable="false">'
  + '<path fill="currentColor" d="M19 11h-1.7c0 .74-.16 1.43-.43 2.05l1.23 1.23c.56-.98.9-2.09.9-3.28zm-4.02.17'
  + 'c0-.06.02-.11.02-.17V5c0-1.66-1.34-3-3-3S9 3.34 9 5v.18l5.98 5.99zM4.27 3 3 4.27l6.01 6.01V11c0 1.66 1.33 3 '
  + '2.99 3 .22 0 .44-.03.65-.08l1.66 1.66c-.71.33-1.5.52-2.31.52-2.76 0-5.3-2.1-5.3-5.1H5c0 3.41 2.72 6.23 6 '
  + '6.72V21h2v-3.28c.91-.13 1.77-.45 2.54-.9L19.73 21 21 19.73 4.27 3z"/></svg>';

// A raised hand (Material "back_hand"), drawn so it shows without an emoji font.
const HAND_SVG = '<svg viewBox="0 0 24 24" width="20" height="20" aria-hidden="true" focusable="false">'
  + '<path fill="currentColor" d="M13 24c-3.26 0-6.19-1.99-7.4-5.02l-3.03-7.61C2.26 10.58 3 9.79 3.81 10.05l.79.26'
  + 'c.56.18 1.02.61 1.24 1.16L7.25 15H8V3.25C8 2.56 8.56 2 9.25 2s1.25.56 1.25 1.25V12h1V1.25C11.5.56 12.06 0 '
  + '12.75 0S14 .56 14 1.25V12h1V2.75c0-.69.56-1.25 1.25-1.25s1.25.56 1.25 1.25V12h1V5.75c0-.69.56-1.25 '
  + '1.25-1.25S21 5.06 21 5.75V16c0 4.42-3.58 8-8 8z"/></svg>';
