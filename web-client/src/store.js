// The page's one state: a frozen object replaced by named transitions. Every transition
// is a pure function (state, payload) -> state; subscribers are told after each one with
// its name, so rendering follows the state and never the other way round.

/**
 * @template S
 * @param {S} initial
 * @param {Record<string, (state: S, payload: any) => S>} transitions
 */
export function createStore(initial, transitions) {
  let state = Object.freeze({ ...initial });
  const listeners = new Set();
  return {
    get state() { return state; },
    /** Apply the transition `name`; unknown names are a bug and throw. */
    dispatch(name, payload) {
      const step = transitions[name];
      if (!step) {
        throw new Error(`store: no transition named ${name}`);
      }
      const prev = state;
      const next = step(prev, payload);
      if (next === prev) {
        return;
      }
      state = Object.freeze(next);
      for (const fn of listeners) {
        fn(state, prev, name);
      }
    },
    subscribe(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
  };
}
