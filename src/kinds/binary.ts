// Kind binary: any executable. Nothing is asked of it (it gets what every dynamically linked
// program reads, and what the config grants); it always runs cold, and safe_exec refuses it.
import { defineKind } from './kind.js';

export const binary = defineKind({ name: 'binary' });
