// Rendering: the page's views from one derived view object, and the people in the room
// as keyed lists. Nothing here holds protocol or media state: app.js owns the store and
// the SDK session and calls in. Every write checks first whether the DOM already shows
// it, so a render that changes nothing touches nothing.

import { humanSize } from './sdk/attachments.js';

const $ = (id) => document.getElementById(id);

export const el = {
  landing: $('view-landing'),
  missing: $('view-missing'),
  room: $('view-room'),
  calls: $('view-calls'),
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
  audioUnlock: $('audio-unlock'),
  stageList: $('stage-list'),
  stageCount: $('stage-count'),
  audienceList: $('audience-list'),
  audienceCount: $('audience-count'),
  audienceEmpty: $('audience-empty'),
  audienceMore: $('audience-more'),
  groupInfo: $('group-info'),
  micSettings: $('mic-settings'),
  micSelect: $('mic-select'),
  groupText: $('group-text'),
  dock: $('dock'),
  meStatus: $('me-status'),
  muteBtn: $('mute-btn'),
  handBtn: $('hand-btn'),
  seatLeaveBtn: $('seat-leave-btn'),
  leaveBtn: $('leave-btn'),
  endBtn: $('end-btn'),
  lockBtn: $('lock-btn'),
  knockCancel: $('knock-cancel'),
  door: $('door'),
  doorCount: $('door-count'),
  doorList: $('door-list'),
  leaveGroupBtn: $('leave-group-btn'),
  sheet: $('sheet'),
  sheetTitle: $('sheet-title'),
  sheetSub: $('sheet-sub'),
  confirm: $('confirm'),
  confirmText: $('confirm-text'),
  confirmYes: $('confirm-yes'),
  confirmNo: $('confirm-no'),
  netStatus: $('net-status'),
  callReturn: $('call-return'),
  toast: $('toast'),
  toastText: $('toast-text'),
  toastClose: $('toast-close'),
  audioSink: $('audio-sink'),
  announcer: $('announcer'),
  speakingNow: $('speaking-now'),
  chat: $('chat'),
  chatToggle: $('chat-toggle'),
  chatBadge: $('chat-badge'),
  chatClose: $('chat-close'),
  chatOlder: $('chat-older'),
  chatLog: $('chat-log'),
  chatEmpty: $('chat-empty'),
  chatMutedNote: $('chat-muted-note'),
  chatForm: $('chat-form'),
  chatInput: $('chat-input'),
  chatSend: $('chat-send'),
  chatEditing: $('chat-editing'),
  chatEditCancel: $('chat-edit-cancel'),
  chatAttach: $('chat-attach'),
  chatFile: $('chat-file'),
  chatUpload: $('chat-upload'),
  chatUploadName: $('chat-upload-name'),
  chatUploadPct: $('chat-upload-pct'),
  chatUploadBar: $('chat-upload-bar'),
  chatUploadCancel: $('chat-upload-cancel'),
  chatAttachStatus: $('chat-attach-status'),
};

el.toastClose.addEventListener('click', hideToast);

// ------------------------------------------------------------------ small DOM writes

export function setText(node, text) {
  if (node.textContent !== text) {
    node.textContent = text;
  }
}

export function setHidden(node, hidden) {
  if (node.hidden !== hidden) {
    node.hidden = hidden;
  }
}

export function setData(node, key, value) {
  if (node.dataset[key] !== value) {
    node.dataset[key] = value;
  }
}

export function setAttr(node, name, value) {
  if (node.getAttribute(name) !== value) {
    node.setAttribute(name, value);
  }
}

// ------------------------------------------------------------------ the page

/**
 * Show the derived view (app.js `viewOf`): which screen, which part of the room page,
 * the badges and the notes. Only what differs from the DOM is written.
 */
export function renderPage(v) {
  setHidden(el.landing, v.screen !== 'landing');
  setHidden(el.missing, v.screen !== 'missing');
  setHidden(el.room, v.screen !== 'room');
  setHidden(el.calls, v.screen !== 'calls');
  if (document.title !== v.title) {
    document.title = v.title;
  }
  setText(el.netStatus, v.net.text);
  setData(el.netStatus, 'state', v.net.state);
  setHidden(el.callReturn, !v.callReturn);
  if (v.screen !== 'room') {
    setHidden(el.dock, true);
    document.body.classList.remove('in-room');
    return;
  }
  setText(el.roomTitle, v.roomTitle);
  setHidden(el.roomState, !v.badge);
  if (v.badge) {
    setText(el.roomState, v.badge.text);
    setData(el.roomState, 'state', v.badge.state);
  }
  setHidden(el.roomNote, !v.roomNote);
  setText(el.roomNote, v.roomNote || '');
  setHidden(el.share, !v.shareUrl);
  if (v.shareUrl && el.shareLink.value !== v.shareUrl) {
    el.shareLink.value = v.shareUrl;
  }
  setHidden(el.final, v.part !== 'final');
  setData(el.final, 'reason', v.part === 'final' ? v.finalReason : '');
  setText(el.finalText, v.part === 'final' ? v.finalText : '');
  setHidden(el.joinForm, v.part !== 'out' && v.part !== 'left');
  setHidden(el.leftNote, !v.leftNote);
  setText(el.leftNote, v.leftNote || '');
  if (!el.joinBtn.disabled) {
    setText(el.joinBtn, v.part === 'left' ? 'Rejoin' : 'Join');
  } else if (v.knocking) {
    setText(el.joinBtn, 'Waiting to be let in…');
  }
  setHidden(el.knockCancel, !v.knocking);
  const inside = v.part === 'in';
  setHidden(el.inRoom, !inside);
  setHidden(el.dock, !inside);
  document.body.classList.toggle('in-room', inside);
  setText(el.roomStatus, inside ? v.status.text : '');
  setData(el.roomStatus, 'state', inside ? v.status.state : '');
  setHidden(el.audioUnlock, !(inside && v.audioBlocked));
  renderDoor(inside ? v.door : []);
}

/** Moderators: everyone asking to come in, each with "Let in" and "Not now". */
function renderDoor(knocks) {
  setHidden(el.door, knocks.length === 0);
  setText(el.doorCount, knocks.length ? `(${knocks.length})` : '');
  const key = knocks.map((k) => `${k.user}:${k.name}`).join('|');
  if (el.doorList.dataset.key === key) {
    return;
  }
  el.doorList.dataset.key = key;
  el.doorList.replaceChildren(...knocks.map((k) => {
    const li = document.createElement('li');
    li.className = 'person knock';
    li.dataset.user = k.user;
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = k.name;
    const yes = document.createElement('button');
    yes.type = 'button';
    yes.className = 'btn btn-primary';
    yes.dataset.admit = 'true';
    yes.textContent = 'Let in';
    yes.setAttribute('aria-label', `Let ${k.name} in`);
    const no = document.createElement('button');
    no.type = 'button';
    no.className = 'btn';
    no.dataset.admit = 'false';
    no.textContent = 'Not now';
    no.setAttribute('aria-label', `Do not let ${k.name} in`);
    li.append(name, yes, no);
    return li;
  }));
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

export function setBusy(button, busy, busyLabel) {
  if (busy) {
    button.dataset.label = button.textContent;
    button.textContent = busyLabel;
  } else if (button.dataset.label) {
    button.textContent = button.dataset.label;
    delete button.dataset.label;
  }
  button.disabled = busy;
  button.setAttribute('aria-busy', String(busy));
}

/**
 * Our own controls. `me` is our ParticipantInfo, `room` the RoomInfo, `selfMuted` our
 * own mute, `freeSeats` how many seats look free, `live` whether requests can go out.
 */
export function renderControls({ me, room, selfMuted, freeSeats, live }) {
  if (!me || !room) {
    return;
  }
  const speaker = me.speaker;
  setHidden(el.muteBtn, !speaker);
  setText(el.muteBtn, selfMuted ? 'Unmute' : 'Mute');
  setAttr(el.muteBtn, 'aria-pressed', String(selfMuted));
  el.muteBtn.classList.toggle('is-muted', selfMuted);
  setHidden(el.seatLeaveBtn, !speaker);
  setHidden(el.handBtn, speaker);
  let hand = 'raise';
  if (me.hand_raised) {
    hand = 'lower';
  } else if (room.seat_mode === 'open' && freeSeats > 0) {
    hand = 'take';
  }
  setData(el.handBtn, 'action', hand);
  setText(el.handBtn, { raise: 'Raise hand', lower: 'Lower hand', take: 'Take a seat' }[hand]);
  el.handBtn.classList.toggle('btn-primary', hand !== 'lower');
  for (const b of [el.muteBtn, el.handBtn, el.seatLeaveBtn]) {
    b.disabled = !live;
  }
  const moderator = me.role === 'owner' || me.role === 'moderator';
  setHidden(el.endBtn, !moderator);
  el.endBtn.disabled = !live;
  // Locked: nobody new comes in; the members still do.
  setHidden(el.lockBtn, !moderator);
  el.lockBtn.disabled = !live;
  setText(el.lockBtn, room.locked ? 'Unlock room' : 'Lock room');
  setAttr(el.lockBtn, 'aria-pressed', String(Boolean(room.locked)));
  // The owner cannot leave its group chat (it ends the room instead).
  setHidden(el.groupInfo, me.role === 'owner');

  let words;
  let state;
  if (!live) {
    words = 'Reconnecting… you keep your place.';
    state = 'reconnecting';
  } else if (me.muted_by_moderator) {
    words = 'A moderator muted you: nobody hears you until they unmute you.';
    state = 'muted_by_moderator';
  } else if (speaker) {
    words = selfMuted ? 'You are on stage, muted.' : 'You are on stage: everyone hears you.';
    state = 'speaker';
  } else if (me.hand_raised) {
    words = 'Hand raised: a moderator can invite you to speak.';
    state = 'listener';
  } else {
    words = 'You are listening. Nobody hears your microphone.';
    state = 'listener';
  }
  setText(el.meStatus, words);
  setData(el.meStatus, 'state', state);
}

// ------------------------------------------------------------------ people

const ROLE_ORDER = { owner: 0, moderator: 1, member: 2 };
/** How many listeners are drawn at first; the rest are summarised ("Show N more"). */
const AUDIENCE_PAGE = 60;

/**
 * The stage and the audience as keyed lists: one <li> per participant, kept for as long
 * as the participant is in its list, updated in place when its record changes. A speaking
 * level touches one tile's class and one CSS variable; no list is rebuilt, so a button
 * under the pointer or with keyboard focus stays the same element.
 */
export class PeopleView {
  /**
   * @param {{ onActions(id: string): void }} handlers
   */
  constructor({ onActions }) {
    this.nodes = new Map(); // id -> { li, p, parts }
    this.free = null; // the free-seats tile
    this.audienceLimit = AUDIENCE_PAGE;
    this.context = { you: null, canModerate: false, room: null };
    // One listener per list: buttons come and go with their rows, the handler stays.
    for (const list of [el.stageList, el.audienceList]) {
      list.addEventListener('click', (ev) => {
        const b = ev.target.closest('.person-menu');
        if (b && list.contains(b)) {
          onActions(b.closest('.person').dataset.id);
        }
      });
    }
    el.audienceMore.addEventListener('click', () => {
      this.audienceLimit += 10 * AUDIENCE_PAGE;
      this.lastPeople && this.render(this.lastPeople, this.lastLevels, this.context);
    });
  }

  /** Forget every row (left the room). */
  clear() {
    el.stageList.replaceChildren();
    el.audienceList.replaceChildren();
    this.nodes.clear();
    this.free = null;
    this.audienceLimit = AUDIENCE_PAGE;
    this.lastPeople = null;
  }

  /**
   * Bring both lists up to date with `people` (Map id -> ParticipantInfo). Rows whose
   * record and context did not change are left alone; order is fixed with the fewest
   * moves (a row already in place is not touched).
   */
  render(people, levels, context) {
    const contextChanged = context.you !== this.context.you || context.canModerate !== this.context.canModerate
      || context.room !== this.context.room;
    this.context = context;
    this.lastPeople = people;
    this.lastLevels = levels;
    const { you, room } = context;
    const byName = (a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    const speakers = [];
    const hands = [];
    const listeners = [];
    let self = null;
    for (const p of people.values()) {
      if (p.speaker) {
        speakers.push(p);
      } else if (p.id === you) {
        self = p;
      } else if (p.hand_raised) {
        hands.push(p);
      } else {
        listeners.push(p);
      }
    }
    speakers.sort((a, b) => (ROLE_ORDER[a.role] - ROLE_ORDER[b.role]) || byName(a, b));
    hands.sort(byName);
    listeners.sort(byName);
    const audience = [...(self ? [self] : []), ...hands, ...listeners];
    const shown = audience.length > this.audienceLimit + 5 ? audience.slice(0, this.audienceLimit) : audience;

    const keep = new Set();
    const stageRows = speakers.map((p) => this.row(p, levels, contextChanged, keep));
    const free = Math.max(0, room.seats - speakers.length);
    if (free > 0) {
      stageRows.push(this.freeTile(free));
    }
    placeInOrder(el.stageList, stageRows);
    placeInOrder(el.audienceList, shown.map((p) => this.row(p, levels, contextChanged, keep)));
    for (const [id, n] of this.nodes) {
      if (!keep.has(id)) {
        n.li.remove();
        this.nodes.delete(id);
      }
    }
    if (free === 0 && this.free) {
      this.free.remove();
      this.free = null;
    }
    setText(el.stageCount, `${speakers.length}/${room.seats}`);
    setText(el.audienceCount, audience.length ? String(audience.length) : '');
    setHidden(el.audienceEmpty, audience.length > 0);
    const hiddenCount = audience.length - shown.length;
    setHidden(el.audienceMore, hiddenCount === 0);
    setText(el.audienceMore, hiddenCount ? `Show more listeners (${hiddenCount.toLocaleString('en')} not shown)` : '');
  }

  row(p, levels, force, keep) {
    keep.add(p.id);
    let n = this.nodes.get(p.id);
    if (!n) {
      n = makeRow();
      n.li.dataset.id = p.id;
      this.nodes.set(p.id, n);
      force = true;
    }
    if (force || n.p !== p) {
      fillRow(n, p, this.context);
      n.p = p;
      this.speaking(p.id, levels.get(p.id) || 0);
    }
    return n.li;
  }

  freeTile(count) {
    if (!this.free) {
      const li = document.createElement('li');
      li.className = 'seat-free';
      li.innerHTML = '<span class="avatar" aria-hidden="true">+</span><span class="name"><span class="label"></span></span>';
      this.free = li;
    }
    setData(this.free, 'count', String(count));
    setText(this.free.querySelector('.label'), count === 1 ? '1 free seat' : `${count} free seats`);
    return this.free;
  }

  /** One participant's speaking level changed: one class, one CSS variable. */
  speaking(id, level) {
    const n = this.nodes.get(id);
    if (!n) {
      return;
    }
    const p = n.p;
    const on = Boolean(p && p.speaker && level > 0 && !p.muted && !p.muted_by_moderator);
    if (n.on !== on) {
      n.on = on;
      n.li.classList.toggle('speaking', on);
      setHidden(n.parts.speakingTag, !on || !p.connected);
    }
    const ring = on ? String(Math.min(1, 0.4 + 3 * level)) : '0';
    if (n.ring !== ring) {
      n.ring = ring;
      n.li.style.setProperty('--level', ring);
    }
  }
}

/** Put `rows` into `list` in this order, moving only rows that are out of place. */
function placeInOrder(list, rows) {
  let cursor = list.firstChild;
  for (const li of rows) {
    if (li === cursor) {
      cursor = cursor.nextSibling;
    } else {
      list.insertBefore(li, cursor);
    }
  }
  // Every wanted row is now before the cursor: what is left is not wanted here.
  while (cursor) {
    const next = cursor.nextSibling;
    cursor.remove();
    cursor = next;
  }
}

function makeRow() {
  const li = document.createElement('li');
  li.className = 'person';
  const avatar = document.createElement('span');
  avatar.className = 'avatar';
  avatar.setAttribute('aria-hidden', 'true');
  const name = document.createElement('span');
  name.className = 'name';
  const label = document.createElement('span');
  label.className = 'label';
  name.append(label);
  const tags = document.createElement('span');
  tags.className = 'tags';
  const t = (cls, text) => {
    const s = document.createElement('span');
    s.className = `tag ${cls}`;
    s.textContent = text;
    s.hidden = true;
    tags.append(s);
    return s;
  };
  const parts = {
    avatar,
    label,
    you: t('you', 'you'),
    role: t('role', ''),
    hand: t('hand-tag', 'hand raised'),
    modMuted: t('mod-muted-tag', 'muted by moderator'),
    connecting: t('state', 'connecting…'),
    speakingTag: t('state speaking-tag', 'speaking'),
    icons: document.createElement('span'),
    menu: null,
  };
  parts.icons.className = 'icons';
  li.append(avatar, name, tags, parts.icons);
  return { li, p: null, parts, on: false, ring: '0', iconKey: '' };
}

function fillRow(n, p, { you, canModerate }) {
  const { li, parts } = n;
  setData(li, 'name', p.name);
  setData(li, 'role', p.role);
  li.classList.toggle('muted', Boolean(p.muted || p.muted_by_moderator));
  li.classList.toggle('hand', Boolean(p.hand_raised));
  li.classList.toggle('me', p.id === you);
  setText(parts.avatar, initials(p.name));
  setText(parts.label, p.name);
  setAttr(parts.label, 'title', p.name);
  setHidden(parts.you, p.id !== you);
  const role = p.role === 'owner' || p.role === 'moderator' ? p.role : '';
  setHidden(parts.role, !role);
  setText(parts.role, role);
  setHidden(parts.hand, !p.hand_raised);
  setHidden(parts.modMuted, !p.muted_by_moderator);
  setHidden(parts.connecting, Boolean(p.connected));
  if (!p.connected || !p.speaker) {
    setHidden(parts.speakingTag, true);
  }
  const iconKey = `${p.hand_raised ? 'h' : ''}${p.muted_by_moderator ? 'M' : p.muted && p.speaker ? 'm' : ''}`;
  if (n.iconKey !== iconKey) {
    n.iconKey = iconKey;
    const icons = [];
    if (p.hand_raised) {
      icons.push(icon('hand-icon', 'hand raised', HAND_SVG));
    }
    if (p.muted_by_moderator) {
      icons.push(icon('mod-muted', 'muted by moderator', MIC_OFF_SVG));
    } else if (p.muted && p.speaker) {
      icons.push(icon('mic-off', 'muted', MIC_OFF_SVG));
    }
    parts.icons.replaceChildren(...icons);
  }
  const wantMenu = canModerate && p.id !== you;
  if (wantMenu && !parts.menu) {
    const menu = document.createElement('button');
    menu.type = 'button';
    menu.className = 'person-menu btn-quiet';
    menu.setAttribute('aria-haspopup', 'dialog');
    menu.textContent = '⋯';
    parts.menu = menu;
    li.append(menu);
  } else if (!wantMenu && parts.menu) {
    parts.menu.remove();
    parts.menu = null;
  }
  if (parts.menu) {
    setAttr(parts.menu, 'aria-label', `Actions for ${p.name}`);
  }
}

function icon(cls, label, svg) {
  const i = document.createElement('span');
  i.className = `icon ${cls}`;
  i.setAttribute('role', 'img');
  i.setAttribute('aria-label', label);
  i.title = label;
  i.innerHTML = svg;
  return i;
}

// ------------------------------------------------------------------ sheet and confirm

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
  setText(el.sheetTitle, p.name);
  const where = p.speaker ? 'On stage' : p.hand_raised ? 'In the audience, hand raised' : 'In the audience';
  setText(el.sheetSub, p.role === 'member' ? where : `${where} · ${p.role}`);
  for (const b of el.sheet.querySelectorAll('.sheet-act')) {
    setHidden(b, !show[b.dataset.act]);
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

/**
 * Ask before something that cannot be undone; resolves true when confirmed. Focus starts
 * on Cancel, so Enter (or Escape) never removes or ends anything by accident.
 */
export function confirmAction(text, yesLabel) {
  el.confirmText.textContent = text;
  el.confirmYes.textContent = yesLabel;
  el.confirm.returnValue = '';
  return new Promise((resolve) => {
    el.confirm.addEventListener('close', () => resolve(el.confirm.returnValue === 'yes'), { once: true });
    el.confirm.showModal();
    el.confirmNo.focus();
  });
}

/** One or two letters for an avatar ("Ada Lovelace" -> "AL"). */
export function initials(name) {
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

// ------------------------------------------------------------------ the group chat

const TIME = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const DAY_TIME = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

/** "14:03" today, the date too before. */
function when(ms) {
  const d = new Date(ms);
  return d.toDateString() === new Date().toDateString() ? TIME.format(d) : DAY_TIME.format(d);
}

/**
 * The chat pane: whether it shows (`shown`), folds away on phones (`folded`), and the
 * composer (`mutedMe`: a moderator muted us, so it is disabled with the words why).
 */
export function renderChatPane({ shown, folded, inRoom, unread, mutedMe, more, loadingOlder, empty, upload = null, attachStatus = '' }) {
  setHidden(el.chat, !shown);
  el.chat.classList.toggle('is-folded', folded);
  el.chat.classList.toggle('in-room', inRoom);
  setHidden(el.chatToggle, !(shown && inRoom));
  setAttr(el.chatToggle, 'aria-expanded', String(!folded));
  setHidden(el.chatClose, !inRoom);
  const badge = unread > 99 ? '99+' : String(unread);
  setHidden(el.chatBadge, !(folded && unread > 0));
  setText(el.chatBadge, unread > 0 ? badge : '');
  setAttr(el.chatToggle, 'aria-label', folded && unread > 0 ? `Chat, ${badge} unread` : 'Chat');
  setHidden(el.chatOlder, !more);
  el.chatOlder.disabled = loadingOlder;
  setText(el.chatOlder, loadingOlder ? 'Loading older messages…' : 'Load older messages');
  setHidden(el.chatEmpty, !empty);
  setHidden(el.chatMutedNote, !mutedMe);
  el.chatInput.disabled = mutedMe;
  el.chatSend.disabled = mutedMe;
  el.chatAttach.disabled = mutedMe || Boolean(upload);
  renderUpload(upload);
  setText(el.chatAttachStatus, attachStatus);
}

/**
 * A file on its way: its name, a progress bar and the percent (of bytes the server
 * acknowledged; while the file is being hashed, "Checking…" and a bar that only moves).
 * @param {{name: string, phase: 'hashing'|'uploading'|'done', loaded: number, total: number}|null} u
 */
function renderUpload(u) {
  setHidden(el.chatUpload, !u);
  if (!u) {
    return;
  }
  setText(el.chatUploadName, u.name);
  const bar = el.chatUploadBar;
  if (u.phase === 'hashing') {
    if (bar.hasAttribute('value')) bar.removeAttribute('value'); // indeterminate
    setText(el.chatUploadPct, 'Checking…');
    setAttr(bar, 'aria-valuetext', `Checking ${u.name}`);
  } else {
    const fraction = u.total > 0 ? Math.min(1, u.loaded / u.total) : 1;
    const pct = `${Math.floor(fraction * 100)}%`;
    if (bar.value !== fraction || !bar.hasAttribute('value')) bar.value = fraction;
    setText(el.chatUploadPct, pct);
    setAttr(bar, 'aria-valuetext', `${u.name}: ${pct} uploaded`);
  }
}

/**
 * The chat's messages as a keyed list (one element per `seq`), text only: a message is
 * written with textContent, so `<b>` shows as four characters. The "New messages" divider
 * stands before `dividerSeq`. Actions are buttons with data-act, handled by app.js.
 */
export class ChatView {
  /**
   * @param {HTMLElement} log
   * @param {object} [options]
   * @param {(hash: string, opts: {thumbnail: boolean}) => Promise<Blob>} [options.load]
   *   fetches an attachment (with the user token: attachments.js `fetchBlob`)
   * @param {(e: Error) => void} [options.onError] a download failed
   */
  constructor(log, { load = null, onError = () => {} } = {}) {
    this.log = log;
    this.load = load;
    this.onError = onError;
    this.rows = new Map(); // seq -> element
    this.divider = document.createElement('div');
    this.divider.className = 'chat-divider';
    this.divider.setAttribute('role', 'separator');
    this.divider.textContent = 'New messages';
    log.addEventListener('click', (ev) => {
      const a = ev.target.closest('a[data-att]');
      const row = a && a.closest('.chat-msg');
      if (row && this.rows.get(Number(row.dataset.seq)) === row) {
        this._openAttachment(ev, a, row);
      }
    });
  }

  clear() {
    for (const row of this.rows.values()) {
      releaseAttachment(row);
    }
    this.rows.clear();
    this.log.replaceChildren();
  }

  /**
   * A tap on an attachment: the full file is fetched (with the token) once, then an
   * image opens in a new tab and any other file is saved under its name.
   */
  _openAttachment(ev, a, row) {
    if (a.dataset.ready === 'true') {
      return; // an object URL already: the browser opens or saves it
    }
    ev.preventDefault();
    if (!this.load || a.dataset.loading === 'true') {
      return;
    }
    const { hash } = a.dataset;
    const key = row.attKey;
    // A new tab must open inside the tap, or the browser blocks it; it is pointed at the
    // file once fetched.
    const tab = a.dataset.att === 'image' ? window.open('', '_blank') : null;
    a.dataset.loading = 'true';
    a.setAttribute('aria-busy', 'true');
    this.load(hash, { thumbnail: false }).then((blob) => {
      if (row.attKey !== key || !row.isConnected) {
        if (tab) tab.close();
        return;
      }
      const url = URL.createObjectURL(blob);
      row.attUrls.push(url);
      a.href = url;
      a.dataset.ready = 'true';
      if (tab) {
        tab.location.href = url;
      } else {
        a.click(); // now with its object URL: the browser saves it as `download`
      }
    }, (e) => {
      if (tab) tab.close();
      this.onError(e);
    }).finally(() => {
      delete a.dataset.loading;
      a.removeAttribute('aria-busy');
    });
  }

  /**
   * @param {object[]} messages sorted by seq
   * @param {{me: string, canModerate: boolean, mutedUsers: string[], unmutable: Set<string>, dividerSeq: number|null}} ctx
   */
  render(messages, ctx) {
    const keep = new Set(messages.map((m) => m.seq));
    for (const [seq, row] of this.rows) {
      if (!keep.has(seq)) {
        releaseAttachment(row);
        row.remove();
        this.rows.delete(seq);
      }
    }
    let prev = null;
    for (const m of messages) {
      let row = this.rows.get(m.seq);
      if (!row) {
        row = makeMessage();
        this.rows.set(m.seq, row);
      }
      fillMessage(row, m, ctx);
      this._fillAttachment(row, m);
      if (ctx.dividerSeq === m.seq) {
        placeAfter(this.log, this.divider, prev);
        prev = this.divider;
      }
      placeAfter(this.log, row, prev);
      prev = row;
    }
    if (ctx.dividerSeq === null || !this.rows.has(ctx.dividerSeq)) {
      this.divider.remove();
    }
  }

  /**
   * What a message carries: a picture's thumbnail inline (fetched with the token, shown
   * through an object URL, revoked when the message goes), else a link "name (size)".
   * Built once per attachment: a render that changes nothing touches nothing.
   */
  _fillAttachment(row, m) {
    const att = !m.deleted && m.attachment && m.attachment.hash ? m.attachment : null;
    const key = att ? `${att.hash}|${att.name}|${att.image ? 'image' : 'file'}` : '';
    if (row.attKey === key) {
      return;
    }
    releaseAttachment(row);
    row.attKey = key;
    const box = row.parts.att;
    setHidden(box, !att);
    setData(row, 'attachment', att ? (att.image ? 'image' : 'file') : '');
    if (!att) {
      return;
    }
    const name = String(att.name || 'file');
    const size = humanSize(att.size);
    if (att.image) {
      const a = document.createElement('a');
      a.className = 'chat-att-thumb';
      a.href = '#';
      a.target = '_blank';
      a.rel = 'noopener';
      a.dataset.att = 'image';
      a.dataset.hash = att.hash;
      a.setAttribute('aria-label', `${name} (${size}): open the full picture`);
      const img = document.createElement('img');
      img.alt = name;
      const { width, height } = fitThumb(att.image.width, att.image.height);
      if (width && height) {
        img.width = width;
        img.height = height;
      }
      a.append(img);
      box.append(a);
      if (this.load) {
        this.load(att.hash, { thumbnail: true }).then((blob) => {
          if (row.attKey !== key) {
            return;
          }
          const url = URL.createObjectURL(blob);
          row.attUrls.push(url);
          img.src = url;
        }, () => {
          if (row.attKey === key) {
            const note = document.createElement('span');
            note.className = 'chat-att-error';
            note.textContent = ' (the picture could not be loaded)';
            a.replaceChildren(document.createTextNode(`${name} (${size})`));
            a.className = 'chat-att-file';
            a.after(note);
          }
        });
      }
    } else {
      const a = document.createElement('a');
      a.className = 'chat-att-file';
      a.href = '#';
      a.download = name;
      a.dataset.att = 'file';
      a.dataset.hash = att.hash;
      a.textContent = `${name} (${size})`;
      box.append(a);
    }
  }
}

/** A thumbnail's box: the picture's aspect ratio, at most 320 × 320 (the server's bound). */
function fitThumb(w, h) {
  const width = Number(w) || 0;
  const height = Number(h) || 0;
  if (!width || !height) {
    return { width: 0, height: 0 };
  }
  const scale = Math.min(1, 320 / width, 320 / height);
  return { width: Math.max(1, Math.round(width * scale)), height: Math.max(1, Math.round(height * scale)) };
}

/** Give back a message's object URLs and empty its attachment box. */
function releaseAttachment(row) {
  for (const url of row.attUrls || []) {
    URL.revokeObjectURL(url);
  }
  row.attUrls = [];
  row.attKey = '';
  if (row.parts && row.parts.att) {
    row.parts.att.replaceChildren();
  }
}

function placeAfter(parent, node, prev) {
  const want = prev ? prev.nextSibling : parent.firstChild;
  if (want !== node) {
    parent.insertBefore(node, want);
  }
}

function makeMessage() {
  const row = document.createElement('article');
  row.className = 'chat-msg';
  const meta = document.createElement('p');
  meta.className = 'chat-meta';
  const name = document.createElement('span');
  name.className = 'chat-name';
  const time = document.createElement('time');
  time.className = 'chat-time';
  const edited = document.createElement('span');
  edited.className = 'chat-edited';
  edited.textContent = '(edited)';
  meta.append(name, ' ', time, ' ', edited);
  const text = document.createElement('p');
  text.className = 'chat-text';
  const att = document.createElement('div');
  att.className = 'chat-att';
  att.hidden = true;
  const acts = document.createElement('div');
  acts.className = 'chat-acts';
  for (const [act, label] of [['edit', 'Edit'], ['delete', 'Delete'], ['mute', 'Mute in chat'], ['unmute', 'Unmute in chat']]) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'btn btn-quiet chat-act';
    b.dataset.act = act;
    b.textContent = label;
    acts.append(b);
  }
  row.append(meta, text, att, acts);
  row.parts = { name, time, edited, text, att, acts };
  row.attUrls = [];
  row.attKey = '';
  return row;
}

function fillMessage(row, m, { me, canModerate, mutedUsers, unmutable }) {
  const { parts } = row;
  const mine = m.author === me;
  setData(row, 'seq', String(m.seq));
  setData(row, 'author', m.author);
  setData(row, 'mine', String(mine));
  setData(row, 'deleted', String(Boolean(m.deleted)));
  setText(parts.name, mine ? `${m.name} (you)` : m.name);
  setText(parts.time, when(m.sent_at_ms));
  setAttr(parts.time, 'datetime', new Date(m.sent_at_ms).toISOString());
  setHidden(parts.edited, !(m.edited_at_ms && !m.deleted));
  setText(parts.text, m.deleted ? 'Message deleted' : m.text);
  parts.text.classList.toggle('is-deleted', Boolean(m.deleted));
  // A file sent without words shows no empty line.
  setHidden(parts.text, !m.deleted && !m.text && Boolean(m.attachment));
  const muted = mutedUsers.includes(m.author);
  const show = {
    edit: mine && !m.deleted,
    delete: !m.deleted && (mine || canModerate),
    mute: canModerate && !mine && !muted && !unmutable.has(m.author),
    unmute: canModerate && !mine && muted,
  };
  const labels = {
    edit: 'Edit your message',
    delete: mine ? 'Delete your message' : `Delete the message from ${m.name}`,
    mute: `Mute in chat: ${m.name}`,
    unmute: `Unmute in chat: ${m.name}`,
  };
  for (const b of parts.acts.children) {
    setHidden(b, !show[b.dataset.act]);
    setAttr(b, 'aria-label', labels[b.dataset.act]);
  }
  setHidden(parts.acts, !Object.values(show).some(Boolean));
}
