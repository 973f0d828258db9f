export * from './schema.js';
export * from './frames.js';
