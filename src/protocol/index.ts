export * from './schema.js';
export * from './limits.js';
export * from './versions.js';
export * from './frames.js';
export * from './shape.js';
export * from './constants.js';
